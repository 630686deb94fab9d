package wire

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// The pairing protocol (port 7444): TLS with the dispatcher's certificate,
// no client certificate. See WIRE.md.
const (
	PathPair        = "/pair"  // POST: ask to be paired
	PathPairPrefix  = "/pair/" // GET /pair/{reqid}: long-poll for the answer
	HeaderNonce     = "X-Pairing-Nonce"
	DefaultPairPort = 7444
	// MaxPairPoll is how long a GET /pair/{reqid} may wait for an answer
	// before it returns {"status":"pending"}.
	MaxPairPoll = 30
)

// Pairing states.
const (
	PairPending  = "pending"
	PairApproved = "approved"
	PairDenied   = "denied"
	PairError    = "error"
)

// PairRequest is the body of POST /pair. CSR is PEM; Nonce is random
// (at least 16 bytes, hex) and echoed in the approval; Port is the port the
// agent serves the operational protocol on; Tags, optional, are the
// agent's [tags], which the dispatcher registers on approval (a dispatcher
// that does not know the field ignores it).
type PairRequest struct {
	Hostname string            `json:"hostname"`
	CSR      string            `json:"csr"`
	Nonce    string            `json:"nonce"`
	Port     int               `json:"port"`
	Tags     map[string]string `json:"tags,omitempty"`
}

// PairResponse answers POST /pair (202 pending with ReqID, or an error
// status with Reason) and GET /pair/{reqid} (pending, approved with Cert,
// CA and Nonce, or denied with Reason).
type PairResponse struct {
	Status string `json:"status"`
	ReqID  string `json:"reqid,omitempty"`
	Reason string `json:"reason,omitempty"`
	Cert   string `json:"cert,omitempty"`
	CA     string `json:"ca,omitempty"`
	Nonce  string `json:"nonce,omitempty"`
}

// pairingCodeDomain separates the code's hash from any other use of
// SHA-256 over the same bytes.
const pairingCodeDomain = "dispatcher-pairing-code-v1"

// PairingCode is the 6-digit code both screens show. It binds the request
// to the TLS connection it travelled on:
//
//	h    = SHA-256("dispatcher-pairing-code-v1" ‖ len(csr) ‖ csr ‖ len(leaf) ‖ leaf)
//	code = uint32(h[0:4], big-endian) mod 1,000,000, as 6 digits with leading zeros
//
// where csr is the DER of the certificate request, leaf the DER of the
// dispatcher's TLS leaf certificate as each side sees it, and len a 4-byte
// big-endian length. A man in the middle that terminates TLS with its own
// certificate changes leaf on the agent's side, so the two codes differ.
func PairingCode(csrDER, leafDER []byte) string {
	h := sha256.New()
	h.Write([]byte(pairingCodeDomain))
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(csrDER)))
	h.Write(n[:])
	h.Write(csrDER)
	binary.BigEndian.PutUint32(n[:], uint32(len(leafDER)))
	h.Write(n[:])
	h.Write(leafDER)
	sum := h.Sum(nil)
	return fmt.Sprintf("%06d", binary.BigEndian.Uint32(sum[:4])%1_000_000)
}
