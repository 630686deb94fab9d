// Package api is the api role (dispatcher-api, dispatcher api): the HTTP
// API on api_bind:api_port (7445) over the same control operations as the
// CLI, for automation pipelines (SPEC §7, docs/API.md).
//
// [Serve] loads dispatcher.conf, builds a control.Engine without an
// Authorize function and a [Server], and serves until SIGTERM. [Server] is
// an http.Handler: every request goes through one front door (ServeHTTP)
// that works out the caller (the socket's address, or X-Forwarded-For
// behind a proxy of api_trusted_proxies), refuses unclean paths, bounds
// the requests in progress (api_max_requests, 503 beyond), denies at once
// when there is no hook and api_auth_default is deny, routes, and logs one
// api-request line and counts it for /metrics. Each handler then decodes
// and checks its request (400, 413), asks the auth hook itself with the
// request's action, script, hosts and arguments and the caller's username,
// token and address (403 with code 1-3), and calls the engine.
//
// /run, /ping and /discovery choose their hosts as the CLI does
// (selection.go): the hosts named, plus with "all" or "tags" the
// registered agents whose tags match (control.Engine.Select), or for a
// run with "retry_failed" the hosts that failed in a stored run
// (control.RetryFailed). The hook is asked with the hosts so selected;
// "dry_run" answers them then and does nothing more. "batch",
// "batch_wait", "max_failures" and "fail_fast" become a control.Rollout,
// read after decoding so that each bad value is a 400 naming its field.
//
// Hostile or broken clients meet bounds at every step (limits.go, listed
// with their answers in docs/API.md, Limits in detail): Serve accepts at
// most MaxConns connections at once (more wait in the backlog) and gives
// headers readHeaderTimeout and maxHeaderBytes; ServeHTTP refuses more
// than maxHeaderLines header lines (431), gives a body bodyTimeout (408)
// and maxBody (413), and arms a write deadline per write, never per
// request, so that sync runs and event streams last as long as their run;
// decodeBody refuses field names that are not spelt exactly, given twice
// or nested too deep (checkMembers). Async runs in flight and event
// streams open have bounds of their own (503 with Retry-After).
//
// Runs go through a control.Tracker, whether the caller waits for them or
// not ("async": true): that is what makes them cancellable (DELETE
// /runs/{reqid}, a client that goes away, the end of the drain) and gives
// them an event log for GET /runs/{reqid}/events (Server-Sent Events).
// Their records are in the store, so /status of any process sharing it
// answers, a run of another process is followed by re-reading its
// record (its batch events rebuilt from the record's progress), and DELETE of such a run asks that process to cancel it through
// the store (control.RequestCancel), then waits for its record to say it
// is over. Stored runs are purged past run_retention on a schedule.
//
// The OpenAPI 3.1 document is openapi.json, embedded and stamped with the
// version; /openapi-live.json adds the fleet's hosts and scripts from a
// discovery of every registered agent. /metrics writes the Prometheus text
// format itself (metrics.go).
//
// Errors are answered as the CLI's --json errors: {"ok":false,"error":…},
// with "code" for refusals and lock conflicts and "conflicts" for the
// latter; statusOf maps control's and store's typed errors to statuses.
// The token is passed to the hook and the agents only: never logged,
// never stored.
package api
