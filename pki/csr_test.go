package pki_test

import (
	"bytes"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dispatcher-dev/dispatcher/pki"
)

func TestCreateAndParseCSR(t *testing.T) {
	key, err := pki.GenerateKey(pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := pki.CreateCSR(pki.Options{}, key, "db-02.example")
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.ParseCSR(p)
	if err != nil {
		t.Fatal(err)
	}
	got := struct {
		CN  string
		DNS []string
	}{csr.Subject.CommonName, csr.DNSNames}
	want := struct {
		CN  string
		DNS []string
	}{"db-02.example", []string{"db-02.example"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("csr (-want +got):\n%s", d)
	}
	if !pki.PublicKeysEqual(csr.PublicKey, key.Public()) {
		t.Fatal("csr carries another key")
	}
	if _, err := pki.CreateCSR(pki.Options{}, key, "-bad"); err == nil {
		t.Fatal("CreateCSR accepted a bad host name")
	}
}

func TestParseCSRRefuses(t *testing.T) {
	key, err := pki.GenerateKey(pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	good, err := pki.CreateCSR(pki.Options{}, key, "web-01")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(good)
	corrupt := append([]byte(nil), b.Bytes...)
	corrupt[len(corrupt)-1] ^= 0x01 // inside the signature
	// Valid request, but padded past the limit with text before the block.
	pad := func(n int) []byte { return append(bytes.Repeat([]byte("x"), n-1), '\n') }
	padded := append(pad(pki.MaxCSRSize-len(good)+1), good...)
	atLimit := append(pad(pki.MaxCSRSize-len(good)), good...)

	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"good", good, ""},
		{"old label", pemBlock("NEW CERTIFICATE REQUEST", b.Bytes), ""},
		{"exactly at the limit", atLimit, ""},
		{"corrupted signature", pemBlock("CERTIFICATE REQUEST", corrupt), "certificate request signature is invalid"},
		{"over 64 KiB", padded, "certificate request is 65"},
		{"empty", nil, "not PEM"},
		{"not pem", []byte("hello"), "not PEM"},
		{"wrong block", pemBlock("CERTIFICATE", b.Bytes), `PEM block is "CERTIFICATE"`},
		{"two blocks", append(append([]byte(nil), good...), good...), "followed by another PEM block"},
		{"garbage der", pemBlock("CERTIFICATE REQUEST", []byte{0x30, 0x01, 0x00}), "parse certificate request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr, err := pki.ParseCSR(tt.in)
			wantErrContains(t, err, tt.want)
			if (err == nil) != (csr != nil) {
				t.Fatalf("csr %v with error %v", csr != nil, err)
			}
		})
	}
}

func TestValidHostname(t *testing.T) {
	label63 := strings.Repeat("a", 63)
	long := strings.Repeat(label63+".", 3) + strings.Repeat("b", 61) // 253
	tests := []struct {
		in, want string
	}{
		{"web-01", ""},
		{"WEB-01.Example.COM", ""},
		{"a", ""},
		{"1.2.3.4", ""},
		{"xn--bcher-kva.example", ""},
		{label63 + ".example", ""},
		{long, ""},
		{"", "host name is empty"},
		{long + "b", "host name is 254 characters long; the limit is 253"},
		{label63 + "a.example", "is 64 characters long; the limit is 63"},
		{"web-01.", "ends with a dot"},
		{".web", "has an empty label"},
		{"web..example", "has an empty label"},
		{"-web", "starts or ends with '-'"},
		{"web-.example", "starts or ends with '-'"},
		{"web_01", `contains '_'`},
		{"web 01", `contains ' '`},
		{"*.example", `contains '*'`},
		{"bücher.example", `contains 'ü'`},
		{"web\n01", `contains '\n'`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			wantErrContains(t, pki.ValidHostname(tt.in), tt.want)
		})
	}
}

// FuzzParseCSR feeds ParseCSR arbitrary bytes. A refusal is an error with
// a message and no request. An accepted request is at most MaxCSRSize
// bytes, is the DER of the one PEM block in the input, has a signature that
// verifies and a key that has a fingerprint and that a CA can sign for,
// and its own PEM encoding is accepted again as the same request.
func FuzzParseCSR(f *testing.F) {
	key, err := pki.GenerateKey(pki.Options{})
	if err != nil {
		f.Fatal(err)
	}
	good, err := pki.CreateCSR(pki.Options{}, key, "web-01")
	if err != nil {
		f.Fatal(err)
	}
	ca := mustCA(f)
	b, _ := pem.Decode(good)
	f.Add(good)
	f.Add(pemBlock("NEW CERTIFICATE REQUEST", b.Bytes))
	f.Add(pemBlock("CERTIFICATE REQUEST", b.Bytes[:len(b.Bytes)/2]))
	f.Add(pemBlock("CERTIFICATE REQUEST", nil))
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\n!!\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		csr, err := pki.ParseCSR(data)
		if err != nil {
			if csr != nil {
				t.Fatal("csr returned with an error")
			}
			if err.Error() == "" {
				t.Fatal("refusal without a message")
			}
			return
		}
		if len(data) > pki.MaxCSRSize {
			t.Fatalf("accepted %d bytes", len(data))
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("accepted a csr with a bad signature: %v", err)
		}
		block, rest := pem.Decode(data)
		if block == nil || !bytes.Equal(block.Bytes, csr.Raw) {
			t.Fatal("the request is not the DER of the input's PEM block")
		}
		if next, _ := pem.Decode(rest); next != nil {
			t.Fatalf("accepted a %q block after the request", next.Type)
		}
		again, err := pki.ParseCSR(pemBlock("CERTIFICATE REQUEST", csr.Raw))
		if err != nil || !bytes.Equal(again.Raw, csr.Raw) {
			t.Fatalf("the accepted request, encoded again, does not read back: %v", err)
		}
		if _, err := pki.Fingerprint(csr.PublicKey); err != nil {
			t.Fatalf("accepted a request whose key has no fingerprint: %v", err)
		}
		if _, err := ca.SignAgentCSR(pki.Options{}, csr, "web-01", 1); err != nil {
			t.Fatalf("accepted a request the ca cannot sign: %v", err)
		}
	})
}
