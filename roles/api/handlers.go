package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/dispatcher-dev/dispatcher/hook"
	"github.com/dispatcher-dev/dispatcher/roles/internal/control"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// Request bodies. Username and token, when present, win over the
// X-Dispatcher-Username and Authorization: Bearer headers.
type (
	runBody struct {
		Hosts    []string     `json:"hosts"`
		Script   string       `json:"script"`
		Args     []string     `json:"args"`
		Username *string      `json:"username"`
		Token    *string      `json:"token"`
		Timeout  timeoutValue `json:"timeout"`
		Parallel int          `json:"parallel"`
		Port     int          `json:"port"`
		Async    bool         `json:"async"`
		// RetryFailed is the reqid of a stored run whose failed hosts
		// this run retries, with its script and arguments.
		RetryFailed string `json:"retry_failed"`
		selectFields
		rolloutFields
	}
	// hostsBody is POST /discovery.
	hostsBody struct {
		Hosts    []string `json:"hosts"`
		Username *string  `json:"username"`
		Token    *string  `json:"token"`
		Parallel int      `json:"parallel"`
		Port     int      `json:"port"`
		selectFields
	}
	pingBody struct {
		hostsBody
		rolloutFields
	}
)

// caller applies a body's username and token.
func caller(r *http.Request, username, token *string) {
	st := stateOf(r)
	if username != nil {
		st.username = *username
	}
	if token != nil {
		st.token = *token
	}
}

// indexBody is GET /.
type indexBody struct {
	Name      string     `json:"name"`
	Version   string     `json:"version"`
	Endpoints []endpoint `json:"endpoints"`
}

type endpoint struct {
	Method  string `json:"method"`
	Path    string `json:"path"`
	Summary string `json:"summary"`
}

func (s *Server) handleIndex(w http.ResponseWriter, r *http.Request) {
	if err := s.authorize(r, hook.Context{Action: actionAPI}); err != nil {
		fail(w, r, err)
		return
	}
	body := indexBody{Name: "dispatcher-api", Version: s.version}
	for _, rt := range s.routeList() {
		body.Endpoints = append(body.Endpoints, endpoint{Method: rt.method, Path: rt.path, Summary: rt.summary})
	}
	writeJSON(w, http.StatusOK, body)
}

// routeList returns the endpoints in the order of the index.
func (s *Server) routeList() []*route {
	order := []string{"GET /{$}", "GET /health", "POST /ping", "POST /run", "GET /discovery", "POST /discovery",
		"GET /status/{reqid}", "GET /runs/{reqid}/events", "DELETE /runs/{reqid}", "GET /openapi.json",
		"GET /openapi-live.json", "GET /metrics"}
	out := make([]*route, 0, len(order))
	for _, p := range order {
		out = append(out, s.routes[p])
	}
	return out
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handlePing(w http.ResponseWriter, r *http.Request) {
	var body pingBody
	if err := decodeBody(w, r, &body, false); err != nil {
		fail(w, r, err)
		return
	}
	caller(r, body.Username, body.Token)
	ro, err := body.rollout()
	if err != nil {
		fail(w, r, err)
		return
	}
	hosts, err := s.selectHosts(body.Hosts, body.selectFields)
	if err != nil {
		fail(w, r, err)
		return
	}
	eng := s.o.Engine
	if err := eng.CheckHosts(hosts, body.Port, body.Parallel, false); err != nil {
		fail(w, r, err)
		return
	}
	if err := s.authorize(r, hook.Context{Action: string(hook.ActionPing), Hosts: hosts}); err != nil {
		fail(w, r, err)
		return
	}
	if body.DryRun {
		writeDryRun(w, dryRunBody{Hosts: hosts})
		return
	}
	st := stateOf(r)
	start := time.Now()
	report, err := eng.Ping(r.Context(), control.PingRequest{Hosts: hosts, Username: st.username, Token: st.token,
		Port: body.Port, Parallel: body.Parallel, Rollout: ro})
	if err != nil {
		fail(w, r, err)
		return
	}
	s.metrics.observe(string(hook.ActionPing), time.Since(start))
	writeJSON(w, http.StatusOK, report)
}

// runRequest turns a /run body into the run it asks for: its hosts
// selected, or — with retry_failed — the script, arguments and failed
// hosts of the stored run, and its rollout. It is not checked yet
// (CheckRun). A retry of a run that cannot be retried asks the hook
// before answering, as GET /status does, so that a refused caller cannot
// tell which runs are stored.
func (s *Server) runRequest(r *http.Request, body *runBody) (control.RunRequest, error) {
	st := stateOf(r)
	req := control.RunRequest{Hosts: body.Hosts, Script: body.Script, Args: body.Args, Username: st.username, Token: st.token,
		Timeout: time.Duration(body.Timeout), Port: body.Port, Parallel: body.Parallel}
	var err error
	if req.Rollout, err = body.rollout(); err != nil {
		return req, err
	}
	if body.RetryFailed == "" {
		req.Hosts, err = s.selectHosts(body.Hosts, body.selectFields)
		return req, err
	}
	if conflicts := body.retryConflicts(); len(conflicts) > 0 {
		return req, errRetryCombined(conflicts)
	}
	if err := store.ValidReqID(body.RetryFailed); err != nil {
		return req, errorf(http.StatusBadRequest, "retry_failed: %v", err)
	}
	prev, failed, err := control.RetryFailed(s.o.Runs, body.RetryFailed, s.log)
	if err != nil {
		if aerr := s.authorize(r, hook.Context{Action: string(hook.ActionRun), Script: prev.Script, Hosts: prev.Hosts, Args: prev.Args}); aerr != nil {
			return req, aerr
		}
		if errors.Is(err, store.ErrNotFound) {
			return req, errorf(http.StatusNotFound, "retry_failed: run %s is not stored: unknown, or older than run_retention", body.RetryFailed)
		}
		return req, fmt.Errorf("retry_failed: %w", err)
	}
	req.Hosts, req.Script, req.Args, req.RetryOf = failed, prev.Script, prev.Args, prev.ReqID
	return req, nil
}

// runAccepted answers an async run (202), or a cancel that is not over yet.
type runAccepted struct {
	ReqID  string `json:"reqid"`
	Status string `json:"status"`
}

func (s *Server) handleRun(w http.ResponseWriter, r *http.Request) {
	var body runBody
	if err := decodeBody(w, r, &body, false); err != nil {
		fail(w, r, err)
		return
	}
	caller(r, body.Username, body.Token)
	st := stateOf(r)
	req, err := s.runRequest(r, &body)
	if err != nil {
		fail(w, r, err)
		return
	}
	if err := s.o.Engine.CheckRun(req); err != nil {
		fail(w, r, err)
		return
	}
	if err := s.authorize(r, hook.Context{Action: string(hook.ActionRun), Script: req.Script, Hosts: req.Hosts, Args: req.Args}); err != nil {
		fail(w, r, err)
		return
	}
	if body.DryRun {
		writeDryRun(w, dryRunBody{Hosts: req.Hosts, Script: req.Script, Args: req.Args, RetryOf: req.RetryOf})
		return
	}
	if body.Async {
		// A slot for as long as the run is in flight: taken before it
		// starts, given back when it is over (or could not start).
		select {
		case s.async <- struct{}{}:
		default:
			fail(w, r, &httpError{status: http.StatusServiceUnavailable, retryAfter: busyRetryAfter,
				msg: fmt.Sprintf("too many runs in the background: %d async runs are in flight, the most this API runs at once; "+
					"nothing was started: try again once some are over", cap(s.async))})
			return
		}
	}
	lr, err := s.tracker.Start(r.Context(), req)
	if err != nil {
		if body.Async {
			<-s.async
		}
		fail(w, r, err)
		return
	}
	st.reqid = lr.ReqID
	if body.Async {
		go func() {
			<-lr.Done()
			<-s.async
		}()
		w.Header().Set("Location", "/status/"+lr.ReqID)
		writeJSON(w, http.StatusAccepted, runAccepted{ReqID: lr.ReqID, Status: store.RunRunning})
		return
	}
	// The caller going away cancels its run, as Ctrl-C does the CLI's.
	stop := context.AfterFunc(r.Context(), lr.Cancel)
	defer stop()
	<-lr.Done()
	report, _, _, err := lr.Result()
	if err != nil {
		status, eb := statusOf(err)
		eb.ReqID, st.err = lr.ReqID, err
		writeJSON(w, status, eb)
		return
	}
	writeJSON(w, http.StatusOK, report)
}

func (s *Server) handleDiscovery(w http.ResponseWriter, r *http.Request) {
	var body hostsBody
	if r.Method == http.MethodPost {
		if err := decodeBody(w, r, &body, true); err != nil {
			fail(w, r, err)
			return
		}
		caller(r, body.Username, body.Token)
	} else if err := discoveryQuery(r, &body); err != nil {
		fail(w, r, err)
		return
	}
	hosts, err := s.selectHosts(body.Hosts, body.selectFields)
	if err != nil {
		fail(w, r, err)
		return
	}
	eng := s.o.Engine
	if err := eng.CheckHosts(hosts, body.Port, body.Parallel, true); err != nil {
		fail(w, r, err)
		return
	}
	if len(hosts) == 0 {
		if hosts, err = eng.RegisteredHosts(); err != nil {
			fail(w, r, err)
			return
		}
	}
	if err := s.authorize(r, hook.Context{Action: string(hook.ActionDiscovery), Hosts: hosts}); err != nil {
		fail(w, r, err)
		return
	}
	if body.DryRun {
		writeDryRun(w, dryRunBody{Hosts: hosts})
		return
	}
	report, err := s.discover(r, hosts, body.Port, body.Parallel)
	if err != nil {
		fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, report)
}

// discover runs a discovery of hosts (none: an empty report).
func (s *Server) discover(r *http.Request, hosts []string, port, parallel int) (*control.DiscoverReport, error) {
	if len(hosts) == 0 {
		return &control.DiscoverReport{OK: true, Results: []control.DiscoverResult{}}, nil
	}
	st := stateOf(r)
	start := time.Now()
	report, err := s.o.Engine.Discover(r.Context(), control.DiscoverRequest{Hosts: hosts, Username: st.username, Token: st.token,
		Port: port, Parallel: parallel})
	if err == nil {
		s.metrics.observe(string(hook.ActionDiscovery), time.Since(start))
	}
	return report, err
}

// discoveryQuery reads GET /discovery's query into body: host (repeated,
// or comma-separated), tag and not_tag (repeated; a comma there separates
// values of one tag), all, dry_run, parallel and port.
func discoveryQuery(r *http.Request, body *hostsBody) error {
	q := r.URL.Query()
	for _, h := range q["host"] {
		for _, part := range strings.Split(h, ",") {
			if part = strings.TrimSpace(part); part != "" {
				body.Hosts = append(body.Hosts, part)
			}
		}
	}
	body.Tags, body.NotTags = q["tag"], q["not_tag"]
	var err error
	if body.Parallel, err = queryInt(q.Get("parallel"), "parallel"); err != nil {
		return err
	}
	if body.Port, err = queryInt(q.Get("port"), "port"); err != nil {
		return err
	}
	if body.All, err = queryBool(q.Get("all"), "all"); err != nil {
		return err
	}
	body.DryRun, err = queryBool(q.Get("dry_run"), "dry_run")
	return err
}

func queryInt(v, name string) (int, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, errorf(http.StatusBadRequest, "%s %q: want a number", name, v)
	}
	return n, nil
}

// statusBody is a stored run as GET /status answers it: status --json.
type statusBody struct {
	OK bool `json:"ok"`
	store.Run
}

func newStatusBody(run store.Run) statusBody {
	if run.Args == nil {
		run.Args = []string{}
	}
	if run.Hosts == nil {
		run.Hosts = []string{}
	}
	if run.Results == nil {
		run.Results = []store.Result{}
	}
	return statusBody{OK: run.OK(), Run: run}
}

// lookup finds run reqid, live in this process and/or stored, and asks the
// hook about action on it (with its script and hosts, when it is known):
// a bad reqid is 400, a refusal 403, an unknown run 404 — in that order,
// so that a caller the hook refuses cannot tell which runs exist.
func (s *Server) lookup(r *http.Request, action string) (store.Run, *control.LiveRun, error) {
	reqid := r.PathValue("reqid")
	if err := store.ValidReqID(reqid); err != nil {
		return store.Run{}, nil, errorf(http.StatusBadRequest, "%v", err)
	}
	st := stateOf(r)
	st.reqid = reqid
	live, _ := s.tracker.Get(reqid)
	run, err := control.GetRun(s.o.Runs, reqid, s.log)
	missing := errors.Is(err, store.ErrNotFound)
	if err != nil && !missing {
		return store.Run{}, nil, err
	}
	if aerr := s.authorize(r, hook.Context{Action: action, Script: run.Script, Hosts: run.Hosts, Args: run.Args}); aerr != nil {
		return store.Run{}, nil, aerr
	}
	if missing {
		return store.Run{}, nil, errorf(http.StatusNotFound, "run %s is not stored: unknown, or older than run_retention", reqid)
	}
	return run, live, nil
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	run, _, err := s.lookup(r, actionStatus)
	if err != nil {
		fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, newStatusBody(run))
}

func (s *Server) handleCancel(w http.ResponseWriter, r *http.Request) {
	run, live, err := s.lookup(r, actionCancel)
	if err != nil {
		fail(w, r, err)
		return
	}
	if live == nil {
		s.cancelElsewhere(w, r, run)
		return
	}
	live.Cancel()
	select {
	case <-live.Done():
	case <-time.After(s.cancelWait):
		writeJSON(w, http.StatusAccepted, runAccepted{ReqID: live.ReqID, Status: "cancelling"})
		return
	}
	if final, err := s.o.Runs.GetRun(live.ReqID); err == nil {
		run = final
	}
	writeJSON(w, http.StatusOK, newStatusBody(run))
}

// cancelElsewhere answers DELETE for a run not in flight in this process:
// one that is over as it is; one running in another process (another API
// node, a CLI sharing the store) by asking that process through the store
// and waiting up to cancelWait for the stored record to say it is over,
// as for a run of this process: 200 with the final record, else 202
// cancelling. A run that process cannot be asked to cancel is 409.
func (s *Server) cancelElsewhere(w http.ResponseWriter, r *http.Request, run store.Run) {
	if run.Status != store.RunRunning {
		writeJSON(w, http.StatusOK, newStatusBody(run)) // over already: nothing to cancel
		return
	}
	err := control.RequestCancel(s.o.Runs, run, s.now())
	var nc *control.NotCancellableError
	if errors.As(err, &nc) {
		fail(w, r, errorf(http.StatusConflict, "%v", err))
		return
	}
	if err != nil {
		fail(w, r, err)
		return
	}
	// A caller that goes away meanwhile leaves the request standing.
	ctx, cancel := context.WithTimeout(r.Context(), s.cancelWait)
	defer cancel()
	tick := time.NewTicker(s.pollEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			writeJSON(w, http.StatusAccepted, runAccepted{ReqID: run.ReqID, Status: "cancelling"})
			return
		case <-tick.C:
		}
		now, err := control.GetRun(s.o.Runs, run.ReqID, s.log)
		if err != nil {
			fail(w, r, err)
			return
		}
		if now.Status != store.RunRunning {
			writeJSON(w, http.StatusOK, newStatusBody(now))
			return
		}
	}
}

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	if err := s.authorize(r, hook.Context{Action: actionAPI}); err != nil {
		fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(s.openapi)))
	_, _ = w.Write(s.openapi)
}

func (s *Server) handleOpenAPILive(w http.ResponseWriter, r *http.Request) {
	hosts, err := s.o.Engine.RegisteredHosts()
	if err != nil {
		fail(w, r, err)
		return
	}
	if err := s.authorize(r, hook.Context{Action: string(hook.ActionDiscovery), Hosts: hosts}); err != nil {
		fail(w, r, err)
		return
	}
	report, err := s.discover(r, hosts, 0, 0)
	if err != nil {
		fail(w, r, err)
		return
	}
	doc, err := liveOpenAPI(s.version, report, s.now())
	if err != nil {
		fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(doc)
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	if err := s.authorize(r, hook.Context{Action: actionMetrics}); err != nil {
		fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	g := gauges{runsInFlight: s.tracker.InFlight(), requestsInFlight: len(s.sem)}
	if err := s.metrics.write(w, g, s.o.Registry.ListAgents, s.now()); err != nil {
		stateOf(r).err = fmt.Errorf("write metrics: %w", err)
	}
}

// handleNotFound answers every other path: 405 when another method would
// do, else 404 — after the hook, like every endpoint.
func (s *Server) handleNotFound(w http.ResponseWriter, r *http.Request) {
	if err := s.authorize(r, hook.Context{Action: actionAPI}); err != nil {
		fail(w, r, err)
		return
	}
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, p := s.mux.Handler(probe); p != "/" && p != "" {
			allowed = append(allowed, m)
		}
	}
	if len(allowed) > 0 {
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		fail(w, r, errorf(http.StatusMethodNotAllowed, "%s is not allowed on %s: use %s", r.Method, r.URL.Path, strings.Join(allowed, " or ")))
		return
	}
	fail(w, r, errorf(http.StatusNotFound, "no such endpoint %s %s (GET / lists them)", r.Method, r.URL.Path))
}
