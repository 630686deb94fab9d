package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/internal/config"
	"github.com/dispatcher-dev/dispatcher/wire"
)

// fuzzPairBodyLimit is the pairing listener's limit on a POST /pair body
// (roles/pairing: a CSR of pki.MaxCSRSize plus 8 KiB for the rest).
const fuzzPairBodyLimit = pki.MaxCSRSize + 8<<10

// FuzzPairRequest takes a POST /pair body through the dispatcher's whole
// intake, as the pairing listener does before anything is queued:
// wire.DecodeRequest behind the body limit, then CheckPairRequest (host
// name, nonce, port, tags, CSR size, PEM, DER and signature).
//
// A refusal is a *wire.RequestError (413 exactly when the body is over the
// limit, else 400) or an *InvalidPairRequestError, each with a message. An
// accepted request has a valid host name, a nonce of 16 to 128 hex digits,
// a port 1-65535, tags as agent.conf's [tags] must be (at most
// config.MaxTags) and a CSR of at most 64 KiB whose signature verifies; it
// gets a 6-digit code; it is accepted again as the queue file keeps it; and
// the CA can sign it for its host name, so an operator never sees a
// request that approve must refuse.
func FuzzPairRequest(f *testing.F) {
	ca, err := pki.NewCA(pki.Options{}, "fuzz CA")
	if err != nil {
		f.Fatal(err)
	}
	key, err := pki.GenerateKey(pki.Options{})
	if err != nil {
		f.Fatal(err)
	}
	csr, err := pki.CreateCSR(pki.Options{}, key, "web-01.example.com")
	if err != nil {
		f.Fatal(err)
	}
	const nonce = "00112233445566778899aabbccddeeff"
	for _, req := range []wire.PairRequest{
		{Hostname: "web-01.example.com", CSR: string(csr), Nonce: nonce, Port: 7443},
		{Hostname: "db-02", CSR: string(csr), Nonce: strings.ToUpper(nonce), Port: 65535},
		{Hostname: "web-01.example.com.", CSR: string(csr), Nonce: nonce, Port: 7443},
		{Hostname: "web-01", CSR: string(csr), Nonce: nonce[:15], Port: 7443},
		{Hostname: "web-01", CSR: string(csr), Nonce: nonce, Port: 0},
		{Hostname: "web-01", CSR: string(csr) + string(csr), Nonce: nonce, Port: 7443},
		{Hostname: "web-01", CSR: strings.Replace(string(csr), "MII", "MIJ", 1), Nonce: nonce, Port: 7443},
		{Hostname: "web-01.example.com", CSR: string(csr), Nonce: nonce, Port: 7443, Tags: map[string]string{"role": "web", "env": "prod"}},
		{Hostname: "web-01.example.com", CSR: string(csr), Nonce: nonce, Port: 7443, Tags: map[string]string{"web server": "x", "env": "a\tb"}},
	} {
		b, err := json.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"hostname":"web-01","csr":"","nonce":"","port":"7443"}`))
	f.Add([]byte(`{"hostname":"web-01","tags":{"role":"web","role":"db"},"Tags":null,"port":7443}`))
	leaf := ca.Cert.Raw // stands for the pairing listener's certificate
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, wire.PathPair, bytes.NewReader(body))
		r.Body = http.MaxBytesReader(rec, r.Body, fuzzPairBodyLimit)
		var req wire.PairRequest
		if err := wire.DecodeRequest(r, &req); err != nil {
			var re *wire.RequestError
			if !errors.As(err, &re) || re.Msg == "" {
				t.Fatalf("decoding error %v (%T), want a *wire.RequestError with a message", err, err)
			}
			if (re.Status == http.StatusRequestEntityTooLarge) != (len(body) > fuzzPairBodyLimit) {
				t.Fatalf("status %d for %d bytes (limit %d)", re.Status, len(body), fuzzPairBodyLimit)
			}
			return
		}
		csr, err := CheckPairRequest(req)
		if err != nil {
			var inv *InvalidPairRequestError
			if !errors.As(err, &inv) || inv.Reason == "" || csr != nil {
				t.Fatalf("refusal %v (%T), csr %v: want an *InvalidPairRequestError with a reason", err, err, csr != nil)
			}
			return
		}
		if err := pki.ValidHostname(req.Hostname); err != nil {
			t.Fatalf("accepted host name %q: %v", req.Hostname, err)
		}
		if len(req.Nonce) < MinNonceLen || len(req.Nonce) > MaxNonceLen ||
			strings.Trim(req.Nonce, "0123456789abcdefABCDEF") != "" {
			t.Fatalf("accepted nonce %q", req.Nonce)
		}
		if req.Port < 1 || req.Port > 65535 {
			t.Fatalf("accepted port %d", req.Port)
		}
		if len(req.CSR) > pki.MaxCSRSize {
			t.Fatalf("accepted a csr of %d bytes", len(req.CSR))
		}
		if err := config.CheckTags(req.Tags); err != nil || len(req.Tags) > config.MaxTags {
			t.Fatalf("accepted %d tags an agent.conf could not hold: %v", len(req.Tags), err)
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("accepted a csr with a bad signature: %v", err)
		}
		if code := wire.PairingCode(csr.Raw, leaf); len(code) != 6 || strings.Trim(code, "0123456789") != "" {
			t.Fatalf("pairing code %q", code)
		}
		kept, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		var again wire.PairRequest
		if err := json.Unmarshal(kept, &again); err != nil {
			t.Fatal(err)
		}
		if _, err := CheckPairRequest(again); err != nil {
			t.Fatalf("accepted, then refused as queued: %v", err)
		}
		cert, err := ca.SignAgentCSR(pki.Options{}, csr, req.Hostname, 1)
		if err != nil {
			t.Fatalf("accepted a request the ca cannot sign: %v", err)
		}
		if !pki.PublicKeysEqual(cert.PublicKey, csr.PublicKey) {
			t.Fatal("the certificate is for another key than the request's")
		}
		if _, err := pki.Fingerprint(csr.PublicKey); err != nil {
			t.Fatalf("accepted a key without a fingerprint: %v", err)
		}
	})
}
