package control

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// TagMatch is one --tag or --not-tag: an agent matches when its tag Key
// has one of Values, or, with no Values ("--tag key"), when it has the tag
// at all. Tags are compared exactly, case and all.
type TagMatch struct {
	Key    string
	Values []string
}

var tagKey = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// ParseTagMatch reads "key=value", "key=v1,v2" (any of the values) or
// "key" (the tag is set, to anything). Keys follow agent.conf's tag names
// (1-64 of A-Z a-z 0-9 _ . -); a value may be empty ("key=" matches an
// empty value) but cannot contain a comma.
func ParseTagMatch(s string) (TagMatch, error) {
	key, values, hasValue := strings.Cut(s, "=")
	if !tagKey.MatchString(key) {
		return TagMatch{}, fmt.Errorf("%q: want key=value, key=v1,v2 or key, with a key of 1-64 letters, digits, '_', '.' or '-'", s)
	}
	m := TagMatch{Key: key}
	if hasValue {
		m.Values = strings.Split(values, ",")
	}
	return m, nil
}

// ParseTagMatches parses every entry with ParseTagMatch.
func ParseTagMatches(ss []string) ([]TagMatch, error) {
	out := make([]TagMatch, 0, len(ss))
	for _, s := range ss {
		m, err := ParseTagMatch(s)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// String is the match as written: key=v1,v2 or key.
func (m TagMatch) String() string {
	if m.Values == nil {
		return m.Key
	}
	return m.Key + "=" + strings.Join(m.Values, ",")
}

// Matches reports whether tags satisfy m.
func (m TagMatch) Matches(tags map[string]string) bool {
	v, ok := tags[m.Key]
	if !ok {
		return false
	}
	return m.Values == nil || slices.Contains(m.Values, v)
}

// Selection says which hosts a run, ping or discovery is for: the hosts
// named, plus — with All or Tags — the registered agents whose tags match
// every entry of Tags and none of NotTags.
type Selection struct {
	Hosts   []string // named hosts ("name" or "name:port"), always selected, in this order
	All     bool     // every registered agent (narrowed by NotTags)
	Tags    []TagMatch
	NotTags []TagMatch
}

// ByTags reports whether s selects registered agents by their tags.
func (s Selection) ByTags() bool { return s.All || len(s.Tags) > 0 }

// Empty reports whether s asks for nothing at all.
func (s Selection) Empty() bool { return len(s.Hosts) == 0 && !s.ByTags() }

// MatchesAgent reports whether the registered agent a is in the tag part
// of s (named hosts aside).
func (s Selection) MatchesAgent(a store.Agent) bool {
	if !s.ByTags() {
		return false
	}
	for _, m := range s.Tags {
		if !m.Matches(a.Tags) {
			return false
		}
	}
	for _, m := range s.NotTags {
		if m.Matches(a.Tags) {
			return false
		}
	}
	return true
}

// String describes the selection as options: "--all --not-tag env=prod".
func (s Selection) String() string {
	var parts []string
	if s.All {
		parts = append(parts, "--all")
	}
	for _, m := range s.Tags {
		parts = append(parts, "--tag "+m.String())
	}
	for _, m := range s.NotTags {
		parts = append(parts, "--not-tag "+m.String())
	}
	return strings.Join(parts, " ")
}

// EmptySelectionError is a selection that picked no host: never a
// success with nothing done. The API answers it 400.
type EmptySelectionError struct {
	Selection  Selection
	Registered int // agents in the registry
}

func (e *EmptySelectionError) Error() string {
	if e.Registered == 0 {
		return fmt.Sprintf("%s selects no host: no agent is registered; pair agents first (dispatcher pairing-mode)", e.Selection)
	}
	return fmt.Sprintf("%s selects none of the %d registered agents: see their tags with 'dispatcher list-agents', "+
		"and refresh them with 'dispatcher discover --all'", e.Selection, e.Registered)
}

// Select returns the hosts of s: the named hosts in the order given, then
// the registered agents that match the tags, sorted by name, leaving out
// those already named (with or without a port). --not-tag narrows the
// tag part only: a host named on the command line is always selected.
//
// Asking for nothing, NotTags without All or Tags, or a tag part that
// matches no agent (an *EmptySelectionError, even beside named hosts) are
// errors: a selection never silently shrinks to nothing. Errors are
// *BadRequestError.
func Select(reg store.Registry, s Selection) ([]string, error) {
	if len(s.NotTags) > 0 && !s.ByTags() {
		return nil, badRequest(errors.New("--not-tag narrows --all or --tag: add --all to start from every registered agent"))
	}
	if s.Empty() {
		return nil, badRequest(errors.New("no hosts given: name hosts, or select agents with --all or --tag key=value"))
	}
	hosts := slices.Clone(s.Hosts)
	if !s.ByTags() {
		return hosts, nil
	}
	named := make(map[string]bool, len(s.Hosts))
	for _, h := range s.Hosts {
		name := h
		if t, err := ParseTarget(h); err == nil {
			name = t.Name
		}
		named[strings.ToLower(name)] = true
	}
	agents, err := reg.ListAgents()
	if err != nil {
		return nil, fmt.Errorf("select agents: %w", err)
	}
	matched := 0
	for _, a := range agents {
		if !s.MatchesAgent(a) {
			continue
		}
		matched++
		if !named[strings.ToLower(a.Hostname)] {
			hosts = append(hosts, a.Hostname)
		}
	}
	if matched == 0 { // even beside named hosts: a tag that matches nothing is a typo more often than not

		return nil, badRequest(&EmptySelectionError{Selection: s, Registered: len(agents)})
	}
	return hosts, nil
}

// Select is [Select] on the engine's registry.
func (e *Engine) Select(s Selection) ([]string, error) {
	return Select(e.o.Registry, s)
}
