package control

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// tagged is a registry of four agents with tags.
func tagged(t *testing.T) *store.Files {
	t.Helper()
	st := store.NewFiles(t.TempDir())
	for _, a := range []store.Agent{
		{Hostname: "web-01", IP: "10.0.0.1", Tags: map[string]string{"role": "web", "env": "prod", "dc": "fra"}},
		{Hostname: "web-02", IP: "10.0.0.2", Tags: map[string]string{"role": "web", "env": "stage"}},
		{Hostname: "db-01", IP: "10.0.0.3", Tags: map[string]string{"role": "db", "env": "prod", "note": ""}},
		{Hostname: "bare", IP: "10.0.0.4"},
	} {
		if err := st.PutAgent(a); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func mustMatches(t *testing.T, ss ...string) []TagMatch {
	t.Helper()
	m, err := ParseTagMatches(ss)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSelect(t *testing.T) {
	st := tagged(t)
	for _, tc := range []struct {
		name string
		sel  Selection
		want []string
	}{
		{"named only, as given", Selection{Hosts: []string{"zz", "web-01:7450"}}, []string{"zz", "web-01:7450"}},
		{"all, sorted", Selection{All: true}, []string{"bare", "db-01", "web-01", "web-02"}},
		{"one tag", Selection{Tags: mustMatches(t, "role=web")}, []string{"web-01", "web-02"}},
		{"and", Selection{Tags: mustMatches(t, "role=web", "env=prod")}, []string{"web-01"}},
		{"or within a key", Selection{Tags: mustMatches(t, "env=prod,stage")}, []string{"db-01", "web-01", "web-02"}},
		{"key set", Selection{Tags: mustMatches(t, "dc")}, []string{"web-01"}},
		{"empty value", Selection{Tags: mustMatches(t, "note=")}, []string{"db-01"}},
		{"not-tag narrows all", Selection{All: true, NotTags: mustMatches(t, "env=prod")}, []string{"bare", "web-02"}},
		{"not-tag any of", Selection{All: true, NotTags: mustMatches(t, "role=web,db")}, []string{"bare"}},
		{"named first, matches once", Selection{Hosts: []string{"web-02", "other"}, Tags: mustMatches(t, "role=web")},
			[]string{"web-02", "other", "web-01"}},
		{"named with a port counts as named", Selection{Hosts: []string{"WEB-01:7450"}, Tags: mustMatches(t, "role=web")},
			[]string{"WEB-01:7450", "web-02"}},
		{"not-tag spares named hosts", Selection{Hosts: []string{"web-01"}, Tags: mustMatches(t, "role=web"), NotTags: mustMatches(t, "env=prod")},
			[]string{"web-01", "web-02"}},
		{"values are case-sensitive", Selection{Tags: mustMatches(t, "role=WEB,db")}, []string{"db-01"}},
	} {
		got, err := Select(st, tc.sel)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, d)
		}
	}
}

func TestSelectRefusals(t *testing.T) {
	st := tagged(t)
	for _, tc := range []struct {
		sel       Selection
		want      string
		emptySel  bool
		wantCount int
	}{
		{Selection{}, "no hosts given", false, 0},
		{Selection{NotTags: mustMatches(t, "env=prod")}, "--not-tag narrows --all or --tag", false, 0},
		{Selection{Tags: mustMatches(t, "role=cache")}, "--tag role=cache selects none of the 4 registered agents", true, 4},
		{Selection{Tags: mustMatches(t, "role=Web")}, "dispatcher discover --all", true, 4},
		{Selection{Hosts: []string{"web-01"}, Tags: mustMatches(t, "role=cache")}, "selects none", true, 4},
		{Selection{Tags: mustMatches(t, "role=web"), NotTags: mustMatches(t, "env")}, "--tag role=web --not-tag env selects none", true, 4},
	} {
		_, err := Select(st, tc.sel)
		var bad *BadRequestError
		if !errors.As(err, &bad) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Select(%+v) = %v, want a *BadRequestError with %q", tc.sel, err, tc.want)
			continue
		}
		var empty *EmptySelectionError
		if errors.As(err, &empty) != tc.emptySel || tc.emptySel && empty.Registered != tc.wantCount {
			t.Errorf("Select(%+v) = %#v: EmptySelectionError %v, want %v with %d registered", tc.sel, err, empty, tc.emptySel, tc.wantCount)
		}
	}
	_, err := Select(store.NewFiles(t.TempDir()), Selection{All: true})
	if err == nil || !strings.Contains(err.Error(), "no agent is registered") {
		t.Errorf("empty registry: %v", err)
	}
}

func TestParseTagMatch(t *testing.T) {
	for in, want := range map[string]TagMatch{
		"role=web":       {Key: "role", Values: []string{"web"}},
		"role=web,db":    {Key: "role", Values: []string{"web", "db"}},
		"role":           {Key: "role"},
		"role=":          {Key: "role", Values: []string{""}},
		"a.b_c-1=x=y":    {Key: "a.b_c-1", Values: []string{"x=y"}},
		"env=prod,,test": {Key: "env", Values: []string{"prod", "", "test"}},
	} {
		got, err := ParseTagMatch(in)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%q (-want +got):\n%s", in, d)
		}
		if got.String() != in {
			t.Errorf("%q: String() = %q", in, got.String())
		}
	}
	for _, in := range []string{"", "=web", "bad key=x", "k\x00=v", strings.Repeat("k", 65) + "=v", "rôle=web"} {
		if m, err := ParseTagMatch(in); err == nil {
			t.Errorf("%q: accepted as %+v", in, m)
		} else if !strings.Contains(err.Error(), "want key=value") {
			t.Errorf("%q: unclear error %v", in, err)
		}
	}
}

// FuzzParseTagMatch: whatever it accepts has a valid key, prints back as
// given, and matches a tag set holding the first of its values.
func FuzzParseTagMatch(f *testing.F) {
	for _, s := range []string{"role=web", "role=web,db", "role", "role=", "=x", "a=b=c", "k=,", "é=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseTagMatch(s)
		if err != nil {
			return
		}
		if !tagKey.MatchString(m.Key) || m.String() != s {
			t.Fatalf("%q parsed as %+v (String %q)", s, m, m.String())
		}
		tags := map[string]string{m.Key: ""}
		if len(m.Values) > 0 {
			tags[m.Key] = m.Values[0]
		}
		if !m.Matches(tags) || m.Matches(map[string]string{}) {
			t.Fatalf("%+v: Matches is wrong", m)
		}
	})
}
