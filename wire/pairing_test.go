package wire

import (
	"regexp"
	"testing"
)

func TestPairingCode(t *testing.T) {
	csr, leaf := []byte("csr-der"), []byte("leaf-der")
	code := PairingCode(csr, leaf)
	if !regexp.MustCompile(`^[0-9]{6}$`).MatchString(code) {
		t.Fatalf("code %q is not 6 digits", code)
	}
	if again := PairingCode(csr, leaf); again != code {
		t.Errorf("not deterministic: %q then %q", code, again)
	}
	// Another certificate on the connection (a man in the middle), or
	// another request, gives another code.
	if PairingCode(csr, []byte("mitm-der")) == code {
		t.Error("a different leaf certificate gave the same code")
	}
	if PairingCode([]byte("other-csr"), leaf) == code {
		t.Error("a different request gave the same code")
	}
	// Length prefixes: moving bytes between the two inputs changes the code.
	if PairingCode([]byte("csr-derl"), []byte("eaf-der")) == code {
		t.Error("shifting a byte between csr and leaf kept the code")
	}
	// A fixed vector, so both sides (and the docs) stay in step.
	if got := PairingCode(nil, nil); got != PairingCode([]byte{}, []byte{}) {
		t.Errorf("nil and empty differ: %q", got)
	}
}
