package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/dispatcher-dev/dispatcher/roles/internal/control"
)

// selectFields are the members of /run, /ping and /discovery bodies that
// choose hosts beside "hosts" (the CLI's --all, --tag, --not-tag), and
// dry_run, which answers the hosts chosen without contacting any.
type selectFields struct {
	All     bool     `json:"all"`
	Tags    []string `json:"tags"`
	NotTags []string `json:"not_tags"`
	DryRun  bool     `json:"dry_run"`
}

// byTags reports whether the body selects registered agents by tags.
func (f selectFields) byTags() bool { return f.All || len(f.Tags) > 0 }

// String describes the selection in the body's terms, for messages:
// `all, tags ["env=prod"], not_tags ["role=db"]`.
func (f selectFields) String() string {
	var parts []string
	if f.All {
		parts = append(parts, "all")
	}
	quoted := func(ss []string) string {
		b, _ := json.Marshal(ss)
		return string(b)
	}
	if len(f.Tags) > 0 {
		parts = append(parts, "tags "+quoted(f.Tags))
	}
	if len(f.NotTags) > 0 {
		parts = append(parts, "not_tags "+quoted(f.NotTags))
	}
	return strings.Join(parts, ", ")
}

// rolloutFields are the members of /run and /ping bodies that roll the
// hosts out in batches (the CLI's --batch, --batch-wait, --max-failures,
// --fail-fast). They are read after decoding, so that a bad value is
// answered with the field's name.
type rolloutFields struct {
	Batch       json.RawMessage `json:"batch"`
	BatchWait   json.RawMessage `json:"batch_wait"`
	MaxFailures json.RawMessage `json:"max_failures"`
	FailFast    bool            `json:"fail_fast"`
}

// rollout returns the rollout the fields ask for, checked: the zero
// Rollout when none is given. Errors are 400s naming the field.
func (f rolloutFields) rollout() (control.Rollout, error) {
	var (
		ro  control.Rollout
		err error
	)
	if ro.Batch, err = amountField("batch", f.Batch); err != nil {
		return ro, err
	}
	if ro.MaxFailures, err = amountField("max_failures", f.MaxFailures); err != nil {
		return ro, err
	}
	if given(f.BatchWait) {
		if ro.BatchWait, err = parseSeconds("batch_wait", f.BatchWait); err != nil {
			return ro, errorf(http.StatusBadRequest, "%v", err)
		}
	}
	ro.FailFast = f.FailFast
	return ro, ro.Check()
}

// given reports whether a raw member was present and not null.
func given(raw json.RawMessage) bool {
	return len(raw) > 0 && !bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

// amountField reads member name: a number of hosts (5, "5") or a
// percentage ("25%"); absent or null is nil.
func amountField(name string, raw json.RawMessage) (*control.Amount, error) {
	if !given(raw) {
		return nil, nil
	}
	var a control.Amount
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, errorf(http.StatusBadRequest, "%s %s: want a number of hosts like 5 or a percentage like \"25%%\" (at most 100%%)",
			name, bytes.TrimSpace(raw))
	}
	return &a, nil
}

// selectHosts returns the hosts a body asks for: hosts as given, or —
// with all or tags — the engine's selection: the named hosts, then the
// registered agents whose tags match. Without all and tags it is hosts,
// untouched, so that bodies without the new members work as they did.
// Errors are 400s naming the field.
func (s *Server) selectHosts(hosts []string, f selectFields) ([]string, error) {
	if len(f.NotTags) > 0 && !f.byTags() {
		return nil, errorf(http.StatusBadRequest, `not_tags only narrows all or tags: add "all": true to start from every registered agent, or give tags`)
	}
	if !f.byTags() {
		return hosts, nil
	}
	tags, err := control.ParseTagMatches(f.Tags)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "tags: %v", err)
	}
	notTags, err := control.ParseTagMatches(f.NotTags)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "not_tags: %v", err)
	}
	out, err := s.o.Engine.Select(control.Selection{Hosts: hosts, All: f.All, Tags: tags, NotTags: notTags})
	var empty *control.EmptySelectionError
	switch {
	case errors.As(err, &empty) && empty.Registered == 0:
		return nil, errorf(http.StatusBadRequest, "%s selects no host: no agent is registered; pair agents first (dispatcher pairing-mode)", f)
	case errors.As(err, &empty):
		return nil, errorf(http.StatusBadRequest, "%s selects none of the %d registered agents: GET /discovery shows their tags "+
			"(and brings the registry's copy of them up to date)", f, empty.Registered)
	case err != nil:
		return nil, err
	}
	return out, nil
}

// queryBool reads a query parameter as true or false; absent is false.
func queryBool(v, name string) (bool, error) {
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, errorf(http.StatusBadRequest, "%s %q: want true or false", name, v)
	}
	return b, nil
}

// dryRunBody answers a request with dry_run: the hosts it would contact,
// after every check and the auth hook; nothing was contacted or stored.
type dryRunBody struct {
	OK      bool     `json:"ok"`
	DryRun  bool     `json:"dry_run"`
	Hosts   []string `json:"hosts"`
	Script  string   `json:"script,omitempty"`   // POST /run
	Args    []string `json:"args,omitempty"`     // POST /run with arguments
	RetryOf string   `json:"retry_of,omitempty"` // POST /run with retry_failed
}

func writeDryRun(w http.ResponseWriter, body dryRunBody) {
	body.OK, body.DryRun = true, true
	if body.Hosts == nil {
		body.Hosts = []string{}
	}
	writeJSON(w, http.StatusOK, body)
}

// retryConflicts returns the members of a /run body that cannot go with
// retry_failed, which takes the script, its arguments and the hosts from
// the stored run.
func (b *runBody) retryConflicts() []string {
	var out []string
	for _, m := range []struct {
		name string
		set  bool
	}{
		{"hosts", b.Hosts != nil}, {"all", b.All}, {"tags", b.Tags != nil}, {"not_tags", b.NotTags != nil},
		{"script", b.Script != ""}, {"args", b.Args != nil},
	} {
		if m.set {
			out = append(out, m.name)
		}
	}
	return out
}

// errRetryCombined is the 400 of retry_failed given with what it replaces.
func errRetryCombined(fields []string) error {
	return errorf(http.StatusBadRequest, "retry_failed cannot be combined with %s: the retry runs the stored run's script "+
		"and arguments on the hosts that failed in it; leave %s out", strings.Join(fields, ", "), plural(fields))
}

func plural(fields []string) string {
	if len(fields) == 1 {
		return "it"
	}
	return "them"
}
