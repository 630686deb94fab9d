package config

import (
	"strconv"
	"strings"
)

// keyLines finds the line on which every key and table of a TOML document
// is first defined, keyed by the dot-joined key path ("tags.env"). The
// toml package keeps positions to itself, so this is a light scanner of its
// own: it knows headers, dotted and quoted keys, strings of all four kinds,
// comments and multi-line arrays, which is enough for a document that
// toml.Decode has already accepted. Keys inside inline tables are not
// recorded; lookups fall back to the enclosing key (see doc.line).
func keyLines(data string) map[string]int {
	s := &scanner{data: data, line: 1}
	out := map[string]int{}
	record := func(path []string, line int) {
		for i := 1; i <= len(path); i++ {
			k := strings.Join(path[:i], ".")
			if _, ok := out[k]; !ok {
				out[k] = line
			}
		}
	}
	var table []string
	for s.i < len(s.data) {
		start := s.i
		s.skipBlank()
		if s.i >= len(s.data) {
			break
		}
		switch c := s.data[s.i]; c {
		case '\n':
			s.line++
			s.i++
		case '#':
			s.skipToEOL()
		case '[':
			s.i++
			if s.peek() == '[' {
				s.i++
			}
			table = s.keyPath()
			record(table, s.line)
			s.skipToEOL()
		default:
			line := s.line
			path := s.keyPath()
			if len(path) == 0 {
				s.skipToEOL()
				break
			}
			record(append(append([]string(nil), table...), path...), line)
			s.skipBlank()
			if s.peek() == '=' {
				s.i++
			}
			s.skipValue()
		}
		if s.i == start { // never loop without progress, whatever the input
			s.i++
		}
	}
	return out
}

type scanner struct {
	data string
	i    int
	line int
}

func (s *scanner) peek() byte {
	if s.i < len(s.data) {
		return s.data[s.i]
	}
	return 0
}

func (s *scanner) skipBlank() {
	for s.i < len(s.data) && (s.data[s.i] == ' ' || s.data[s.i] == '\t' || s.data[s.i] == '\r') {
		s.i++
	}
}

// skipToEOL moves to the next newline without consuming it.
func (s *scanner) skipToEOL() {
	if j := strings.IndexByte(s.data[s.i:], '\n'); j >= 0 {
		s.i += j
	} else {
		s.i = len(s.data)
	}
}

// keyPath reads a possibly dotted key of bare and quoted parts.
func (s *scanner) keyPath() []string {
	var path []string
	for {
		s.skipBlank()
		switch q := s.peek(); q {
		case '"', '\'':
			start := s.i
			s.skipString()
			raw := s.data[start:s.i]
			if q == '"' {
				if u, err := strconv.Unquote(raw); err == nil {
					raw = u
				} else {
					raw = strings.Trim(raw, `"`)
				}
			} else {
				raw = strings.Trim(raw, "'")
			}
			path = append(path, raw)
		default:
			start := s.i
			for s.i < len(s.data) && !strings.ContainsRune(" \t\r\n=.[]#\"'", rune(s.data[s.i])) {
				s.i++
			}
			if s.i == start {
				return path
			}
			path = append(path, s.data[start:s.i])
		}
		s.skipBlank()
		if s.peek() != '.' {
			return path
		}
		s.i++
	}
}

// skipString moves past a string of any of the four kinds starting at s.i,
// counting the newlines of multi-line strings.
func (s *scanner) skipString() {
	q := s.data[s.i]
	triple := strings.Repeat(string(q), 3)
	if strings.HasPrefix(s.data[s.i:], triple) {
		s.i += 3
		for s.i < len(s.data) {
			switch {
			case s.data[s.i] == '\\' && q == '"':
				if s.i+1 < len(s.data) && s.data[s.i+1] == '\n' {
					s.line++
				}
				s.i += 2
			case strings.HasPrefix(s.data[s.i:], triple):
				s.i += 3
				// Up to two more quotes belong to the content: """a"""""
				for n := 0; n < 2 && s.peek() == q; n++ {
					s.i++
				}
				return
			default:
				if s.data[s.i] == '\n' {
					s.line++
				}
				s.i++
			}
		}
		s.i = min(s.i, len(s.data))
		return
	}
	s.i++
	for s.i < len(s.data) && s.data[s.i] != '\n' {
		c := s.data[s.i]
		s.i++
		if c == q {
			return
		}
		if c == '\\' && q == '"' && s.i < len(s.data) && s.data[s.i] != '\n' {
			s.i++
		}
	}
}

// skipValue moves past a value up to the newline that ends it, through
// nested arrays and inline tables that may span lines.
func (s *scanner) skipValue() {
	depth := 0
	for s.i < len(s.data) {
		switch c := s.data[s.i]; c {
		case '\n':
			if depth == 0 {
				return
			}
			s.line++
			s.i++
		case '#':
			s.skipToEOL()
		case '"', '\'':
			s.skipString()
		case '[', '{':
			depth++
			s.i++
		case ']', '}':
			depth = max(depth-1, 0)
			s.i++
		default:
			s.i++
		}
	}
}
