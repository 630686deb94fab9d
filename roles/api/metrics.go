package api

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/internal/cmdutil"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// fanoutBuckets are the upper bounds, in seconds, of the fan-out latency
// histogram.
var fanoutBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}

// agentsCacheFor is how long the registry read for /metrics is reused.
const agentsCacheFor = 10 * time.Second

// metrics are the API's Prometheus metrics, written in the text exposition
// format (version 0.0.4) by write. It is safe for concurrent use.
type metrics struct {
	mu        sync.Mutex
	requests  map[[2]string]uint64 // route, code
	runs      map[string]uint64    // result
	decisions map[[2]string]uint64 // by, outcome
	fanout    map[string]*histogram

	agentsAt time.Time
	agents   []store.Agent
}

type histogram struct {
	counts []uint64 // per bucket, not cumulative; the last is +Inf
	sum    float64
	n      uint64
}

func newMetrics() *metrics {
	return &metrics{requests: map[[2]string]uint64{}, runs: map[string]uint64{}, decisions: map[[2]string]uint64{},
		fanout: map[string]*histogram{}}
}

func (m *metrics) request(route string, code int) {
	m.mu.Lock()
	m.requests[[2]string{route, strconv.Itoa(code)}]++
	m.mu.Unlock()
}

// run counts a finished run: ok, failed, cancelled or error (not stored).
func (m *metrics) run(result string) {
	m.mu.Lock()
	m.runs[result]++
	m.mu.Unlock()
}

// decision counts an auth decision, by the hook or by api_auth_default.
func (m *metrics) decision(by, outcome string) {
	m.mu.Lock()
	m.decisions[[2]string{by, outcome}]++
	m.mu.Unlock()
}

// observe records how long a fan-out (op: run, ping, discovery) took.
func (m *metrics) observe(op string, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.fanout[op]
	if h == nil {
		h = &histogram{counts: make([]uint64, len(fanoutBuckets)+1)}
		m.fanout[op] = h
	}
	s := d.Seconds()
	i := sort.SearchFloat64s(fanoutBuckets, s) // first bound >= s
	h.counts[i]++
	h.sum += s
	h.n++
}

// gauges are the values read at scrape time.
type gauges struct {
	runsInFlight     int
	requestsInFlight int
}

// write writes every metric. agents lists the registry (read at most every
// agentsCacheFor).
func (m *metrics) write(w io.Writer, g gauges, agents func() ([]store.Agent, error), now time.Time) error {
	m.mu.Lock()
	stale := m.agents == nil || now.Sub(m.agentsAt) >= agentsCacheFor
	m.mu.Unlock()
	if stale {
		if list, err := agents(); err == nil {
			m.mu.Lock()
			m.agents, m.agentsAt = list, now
			m.mu.Unlock()
		}
	}
	var buf bytes.Buffer
	e := expo{w: &buf}
	m.mu.Lock()
	b := cmdutil.Build()
	e.family("dispatcher_api_build_info", "gauge", "The running API's version, commit and Go version (always 1).")
	e.sample("dispatcher_api_build_info", labels{"commit", b.Commit, "goversion", b.GoVersion, "version", b.Version}, 1)

	e.family("dispatcher_api_requests_total", "counter", "HTTP requests answered, by route and status code.")
	for _, k := range sortedKeys2(m.requests) {
		e.sample("dispatcher_api_requests_total", labels{"code", k[1], "route", k[0]}, float64(m.requests[k]))
	}
	e.family("dispatcher_api_requests_in_flight", "gauge", "HTTP requests being answered now, /health and /metrics left out.")
	e.sample("dispatcher_api_requests_in_flight", nil, float64(g.requestsInFlight))

	e.family("dispatcher_api_runs_total", "counter", "Runs started by the API that are over, by result: ok (every host exited 0), failed, cancelled, error (results not stored).")
	for _, k := range sortedKeys(m.runs) {
		e.sample("dispatcher_api_runs_total", labels{"result", k}, float64(m.runs[k]))
	}
	e.family("dispatcher_api_runs_in_flight", "gauge", "Runs in flight in this API process.")
	e.sample("dispatcher_api_runs_in_flight", nil, float64(g.runsInFlight))

	e.family("dispatcher_api_auth_decisions_total", "counter", "Auth decisions, by who decided (hook, or default: api_auth_default without a hook) and outcome.")
	for _, k := range sortedKeys2(m.decisions) {
		e.sample("dispatcher_api_auth_decisions_total", labels{"by", k[0], "outcome", k[1]}, float64(m.decisions[k]))
	}

	e.family("dispatcher_api_fanout_duration_seconds", "histogram", "How long a fan-out took, from the first agent contacted to the last result, by operation.")
	for _, op := range sortedKeys(m.fanout) {
		h := m.fanout[op]
		var cum uint64
		for i, bound := range fanoutBuckets {
			cum += h.counts[i]
			e.sample("dispatcher_api_fanout_duration_seconds_bucket", labels{"le", formatFloat(bound), "op", op}, float64(cum))
		}
		e.sample("dispatcher_api_fanout_duration_seconds_bucket", labels{"le", "+Inf", "op", op}, float64(h.n))
		e.sample("dispatcher_api_fanout_duration_seconds_sum", labels{"op", op}, h.sum)
		e.sample("dispatcher_api_fanout_duration_seconds_count", labels{"op", op}, float64(h.n))
	}

	e.family("dispatcher_agents_registered", "gauge", "Agents in the registry.")
	e.sample("dispatcher_agents_registered", nil, float64(len(m.agents)))
	e.family("dispatcher_agent_last_contact_timestamp_seconds", "gauge", "When the dispatcher last reached each agent (run, ping or discovery), Unix time; agents never reached are left out.")
	for _, a := range m.agents {
		if !a.LastContact.IsZero() {
			e.sample("dispatcher_agent_last_contact_timestamp_seconds", labels{"host", a.Hostname}, float64(a.LastContact.Unix()))
		}
	}
	e.family("dispatcher_agent_cert_expiry_timestamp_seconds", "gauge", "When each agent's certificate expires (notAfter), Unix time.")
	for _, a := range m.agents {
		if t, err := pki.ParseOpenSSLTime(a.Expiry); err == nil {
			e.sample("dispatcher_agent_cert_expiry_timestamp_seconds", labels{"host", a.Hostname}, float64(t.Unix()))
		}
	}
	m.mu.Unlock()
	if e.err != nil {
		return e.err
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// labels are name, value pairs, names in order.
type labels []string

// expo writes the text exposition format.
type expo struct {
	w   io.Writer
	err error
}

func (e *expo) family(name, typ, help string) {
	e.printf("# HELP %s %s\n# TYPE %s %s\n", name, escapeHelp(help), name, typ)
}

func (e *expo) sample(name string, l labels, v float64) {
	var b strings.Builder
	b.WriteString(name)
	if len(l) > 0 {
		b.WriteByte('{')
		for i := 0; i+1 < len(l); i += 2 {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(l[i])
			b.WriteString(`="`)
			b.WriteString(escapeLabel(l[i+1]))
			b.WriteByte('"')
		}
		b.WriteByte('}')
	}
	e.printf("%s %s\n", b.String(), formatFloat(v))
}

func (e *expo) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}

var (
	labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }
func escapeHelp(s string) string  { return helpEscaper.Replace(s) }

// formatFloat writes a sample value: integers as integers, +Inf, -Inf,
// NaN, and other values in the shortest form that reads back exactly.
func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func sortedKeys2(m map[[2]string]uint64) [][2]string {
	keys := make([][2]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i][0] != keys[j][0] {
			return keys[i][0] < keys[j][0]
		}
		return keys[i][1] < keys[j][1]
	})
	return keys
}
