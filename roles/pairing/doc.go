// Package pairing is the pairing role (dispatcher-pairing, dispatcher
// pairing, dispatcher pairing-mode): the TLS listener on 7444 where agents
// ask to be enrolled (WIRE.md, pairing protocol), and the interactive
// approval prompt. What a request, an approval or a denial does is in
// roles/internal/control (Pairing); this package is HTTP and the terminal.
//
// [Serve] is the role's action, with or without the serve command. It
// loads dispatcher.conf, listens on --bind:--port (default all addresses,
// pairing_port) with the dispatcher certificate followed by the CA
// certificate (so agents can pin the CA by its key), and answers:
//
//	POST /pair          → 202 {"status":"pending","reqid"}; 400 malformed, 408 body
//	                      too slow, 409 a request for that host name is pending,
//	                      413 body too large, 429 queue full or listener busy,
//	                      each {"status":"error","reason"}
//	GET /pair/{reqid}   → long-polls up to wire.MaxPairPoll seconds: pending,
//	                      approved (cert, ca, nonce) or denied (reason); an unknown
//	                      reqid and a wrong X-Pairing-Nonce get the same 404
//
// Any request: 431 beyond maxHeaderLines header lines, 400 for a path with
// empty, "." or ".." segments. The listener takes at most maxConns
// connections at once (more wait to be accepted), bounds the POST /pair
// requests checked at once (maxSubmits) and the long polls waiting
// (maxPolls; a poll over it is answered at once), and has handshake,
// header, request and write deadlines (limits.go, server.go).
//
// It denies expired requests and purges old answers every few seconds.
// With stdin and stdout on a terminal it runs the prompt (a/d/s, aN/dN,
// rN, l, q) over the same queue; without one it only serves, until its
// context ends (SIGTERM, SIGINT), and other processes decide.
//
// Errors: Serve returns configuration, identity and listen errors with
// what to do next; per-request problems are answers and log lines
// (pair-request, pair-reject), never errors of Serve.
package pairing
