package pki

import (
	"bytes"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strings"
)

const (
	// maxSerialValueBytes bounds a parsed serial number. RFC 5280 allows 20
	// octets; twice that leaves room for odd historical certificates.
	maxSerialValueBytes = 40
	// maxSerialInput bounds the text ParseSerial reads.
	maxSerialInput = 256
)

// ParseSerial reads a certificate serial number written in any of the forms
// the Perl dispatcher's revoked-serials and dispatcher-serial files accepted,
// ignoring surrounding space and letter case:
//
//	0a1b              plain hex
//	0A:1B             colon-separated hex (openssl x509 -text)
//	0x0a1b            hex with a 0x prefix
//	serial=0A1B       openssl x509 -serial
//	2587 (0xa1b)      openssl x509 -text for short serials: decimal and hex
//	2587              only decimal digits: hex or decimal, see below
//
// A string of decimal digits only is ambiguous: ParseSerial returns both its
// hex and its decimal reading (one value when they coincide, as for "7").
// Every other form yields exactly one value. Negative serials, empty input,
// characters that are not hex digits and values over 40 bytes are errors.
func ParseSerial(s string) ([]*big.Int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("serial is empty")
	}
	if len(s) > maxSerialInput {
		return nil, fmt.Errorf("serial is %d characters long; the limit is %d", len(s), maxSerialInput)
	}
	l := asciiLower(s)
	if strings.HasPrefix(l, "-") {
		return nil, fmt.Errorf("serial %q is negative", s)
	}
	switch {
	case strings.HasPrefix(l, "serial="):
		return one(parseHexSerial(s, strings.TrimSpace(l[len("serial="):]), true))
	case strings.HasPrefix(l, "0x"):
		return one(parseHexSerial(s, l[2:], false))
	case strings.Contains(l, "("):
		return one(parseTextSerial(s, l))
	case strings.Contains(l, ":"):
		return one(parseHexSerial(s, l, true))
	case isDecimal(l):
		return parseAmbiguousSerial(s, l)
	default:
		return one(parseHexSerial(s, l, false))
	}
}

func one(n *big.Int, err error) ([]*big.Int, error) {
	if err != nil {
		return nil, err
	}
	return []*big.Int{n}, nil
}

// parseHexSerial reads digits as hex; with colons, as groups of one or two
// hex digits separated by ':'. orig is the input, for messages.
func parseHexSerial(orig, digits string, colons bool) (*big.Int, error) {
	if colons && strings.Contains(digits, ":") {
		var b strings.Builder
		for g := range strings.SplitSeq(digits, ":") {
			if len(g) == 0 || len(g) > 2 {
				return nil, fmt.Errorf("serial %q: colon-separated hex needs one or two digits between colons", orig)
			}
			b.WriteString(g)
		}
		digits = b.String()
	}
	if digits == "" {
		return nil, fmt.Errorf("serial %q has no digits", orig)
	}
	for i := 0; i < len(digits); i++ {
		if !isHexDigit(digits[i]) {
			return nil, badSerialChar(orig, digits[i:])
		}
	}
	n, ok := new(big.Int).SetString(digits, 16)
	if !ok {
		return nil, fmt.Errorf("serial %q is not hex", orig)
	}
	return checkSerialSize(orig, n)
}

// parseTextSerial reads "2587 (0xa1b)" and requires both halves to agree.
func parseTextSerial(orig, l string) (*big.Int, error) {
	dec, rest, _ := strings.Cut(l, "(")
	dec = strings.TrimSpace(dec)
	hexPart, ok := strings.CutSuffix(strings.TrimSpace(rest), ")")
	if !ok {
		return nil, fmt.Errorf("serial %q: expected the openssl form \"DECIMAL (0xHEX)\"", orig)
	}
	hexPart, ok = strings.CutPrefix(strings.TrimSpace(hexPart), "0x")
	if !ok || !isDecimal(dec) {
		return nil, fmt.Errorf("serial %q: expected the openssl form \"DECIMAL (0xHEX)\"", orig)
	}
	h, err := parseHexSerial(orig, hexPart, false)
	if err != nil {
		return nil, err
	}
	d, _ := new(big.Int).SetString(dec, 10)
	if d.Cmp(h) != 0 {
		return nil, fmt.Errorf("serial %q: the decimal and hex parts differ", orig)
	}
	return h, nil
}

// parseAmbiguousSerial returns the hex and the decimal reading of digits,
// leaving out a reading that is too large and merging equal ones.
func parseAmbiguousSerial(orig, digits string) ([]*big.Int, error) {
	var out []*big.Int
	var firstErr error
	h, _ := new(big.Int).SetString(digits, 16)
	d, _ := new(big.Int).SetString(digits, 10)
	for _, n := range []*big.Int{h, d} {
		if _, err := checkSerialSize(orig, n); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if len(out) == 1 && out[0].Cmp(n) == 0 {
			continue
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, firstErr
	}
	return out, nil
}

func checkSerialSize(orig string, n *big.Int) (*big.Int, error) {
	if size := (n.BitLen() + 7) / 8; size > maxSerialValueBytes {
		return nil, fmt.Errorf("serial %q is %d bytes; the limit is %d", orig, size, maxSerialValueBytes)
	}
	return n, nil
}

func badSerialChar(orig, at string) error {
	r := []rune(at)[0]
	return fmt.Errorf("serial %q contains %q, which is not a hex digit", orig, r)
}

func isDecimal(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isHexDigit(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f'
}

// asciiLower lowercases ASCII letters only, so that no other character can
// turn into a hex digit or a keyword.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// FormatSerial writes n as lowercase hex of even length without separators,
// the form the Perl agent stores in dispatcher-serial. Nil is "".
func FormatSerial(n *big.Int) string {
	if n == nil {
		return ""
	}
	sign := ""
	if n.Sign() < 0 {
		sign = "-"
	}
	h := new(big.Int).Abs(n).Text(16)
	if len(h)%2 == 1 {
		h = "0" + h
	}
	return sign + h
}

// SerialSet is a set of serial numbers, such as the revoked serials an agent
// refuses. The zero value is an empty set ready to use.
type SerialSet struct {
	m map[string]*big.Int
}

func serialKey(n *big.Int) string {
	if n.Sign() < 0 {
		return "-" + string(n.Bytes())
	}
	return string(n.Bytes())
}

// Add puts n in the set.
func (s *SerialSet) Add(n *big.Int) {
	if n == nil {
		return
	}
	if s.m == nil {
		s.m = make(map[string]*big.Int)
	}
	s.m[serialKey(n)] = new(big.Int).Set(n)
}

// Contains reports whether n is in the set.
func (s SerialSet) Contains(n *big.Int) bool {
	if n == nil {
		return false
	}
	_, ok := s.m[serialKey(n)]
	return ok
}

// Len returns the number of distinct serials in the set.
func (s SerialSet) Len() int { return len(s.m) }

// Values returns the serials in the set in increasing order.
func (s SerialSet) Values() []*big.Int {
	out := make([]*big.Int, 0, len(s.m))
	for _, n := range s.m {
		out = append(out, new(big.Int).Set(n))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Cmp(out[j]) < 0 })
	return out
}

// ParseSerialList reads a revoked-serials file: one serial per line in any
// form ParseSerial reads, '#' starting a comment, blank lines ignored. Every
// reading of an ambiguous line is added, so that a revocation is never
// missed (failing closed). Lines that do not parse are reported as errors
// "line N: …" and skipped; the good lines are kept.
func ParseSerialList(data []byte) (SerialSet, []error) {
	var set SerialSet
	var errs []error
	for i, line := range bytes.Split(data, []byte("\n")) {
		if j := bytes.IndexByte(line, '#'); j >= 0 {
			line = line[:j]
		}
		text := strings.TrimSpace(string(line))
		if text == "" {
			continue
		}
		ns, err := ParseSerial(text)
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", i+1, err))
			continue
		}
		for _, n := range ns {
			set.Add(n)
		}
	}
	return set, errs
}
