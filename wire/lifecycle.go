package wire

import (
	"context"
	"crypto/x509"
	"net/http"
)

// Paths of the certificate lifecycle added by the Go agent (documented in
// docs/DEVELOPER.md). Perl agents answer 404 to them.
const (
	PathRevocations      = "/revocations"
	PathDispatcherSerial = "/dispatcher-serial"
)

// RenewRequest is the body of POST /renew: the agent answers with a
// certificate request for its current key.
type RenewRequest struct {
	ReqID string `json:"reqid"`
}

// RenewResponse answers POST /renew. CSR is a PEM certificate request
// signed by the agent's current key, for its host name.
type RenewResponse struct {
	Status string `json:"status"`
	CSR    string `json:"csr"`
	ReqID  string `json:"reqid"`
}

// RenewCompleteRequest is the body of POST /renew-complete: the new agent
// certificate in PEM (leaf first, optional intermediates after it) and the
// CA certificate that issued it.
type RenewCompleteRequest struct {
	Cert  string `json:"cert"`
	CA    string `json:"ca"`
	ReqID string `json:"reqid"`
}

// StatusResponse is the plain {"status":"ok","reqid"} answer of
// /renew-complete and /dispatcher-serial.
type StatusResponse struct {
	Status string `json:"status"`
	ReqID  string `json:"reqid"`
}

// RevocationsRequest is the body of POST /revocations: serial numbers of
// dispatcher certificates the agent must refuse from now on, as lowercase
// hex (any form pki.ParseSerial reads is accepted).
type RevocationsRequest struct {
	Serials []string `json:"serials"`
	ReqID   string   `json:"reqid"`
}

// RevocationsResponse answers POST /revocations: Added is the number of
// serials that were new to the agent, Total the size of its list after the
// merge.
type RevocationsResponse struct {
	Status string `json:"status"`
	Added  int    `json:"added"`
	Total  int    `json:"total"`
	ReqID  string `json:"reqid"`
}

// DispatcherSerialRequest is the body of POST /dispatcher-serial: the
// serial (lowercase hex) the agent pins as its legacy dispatcher-serial. It
// must be the serial of the certificate the request is made with.
type DispatcherSerialRequest struct {
	Serial string `json:"serial"`
	ReqID  string `json:"reqid"`
}

// MaxRevocationsPush is the most serials one POST /revocations may carry.
const MaxRevocationsPush = 10000

// Renew sends POST /renew.
func (c *Client) Renew(ctx context.Context, t Target, req RenewRequest) (*RenewResponse, error) {
	var out RenewResponse
	if err := c.Do(ctx, t, http.MethodPost, PathRenew, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RenewComplete sends POST /renew-complete.
func (c *Client) RenewComplete(ctx context.Context, t Target, req RenewCompleteRequest) (*StatusResponse, error) {
	var out StatusResponse
	if err := c.Do(ctx, t, http.MethodPost, PathRenewComplete, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// PushRevocations sends POST /revocations.
func (c *Client) PushRevocations(ctx context.Context, t Target, req RevocationsRequest) (*RevocationsResponse, error) {
	var out RevocationsResponse
	if err := c.Do(ctx, t, http.MethodPost, PathRevocations, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// PushDispatcherSerial sends POST /dispatcher-serial.
func (c *Client) PushDispatcherSerial(ctx context.Context, t Target, req DispatcherSerialRequest) (*StatusResponse, error) {
	var out StatusResponse
	if err := c.Do(ctx, t, http.MethodPost, PathDispatcherSerial, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Peer receives the certificate chain an agent presented on the connection
// that carried an answer: see WithPeer.
type Peer struct {
	Chain []*x509.Certificate
}

// Leaf returns the agent's certificate, or nil when nothing was recorded.
func (p *Peer) Leaf() *x509.Certificate {
	if p == nil || len(p.Chain) == 0 {
		return nil
	}
	return p.Chain[0]
}

type peerKey struct{}

// WithPeer returns a context whose requests record in p the certificates
// the agent presented on the connection their answer came on, whether that
// connection was new, resumed or reused from the pool: what the identity
// check accepted for it. Each request overwrites p; a request that got no
// answer leaves it as it was. p must not be shared by concurrent requests.
func WithPeer(ctx context.Context, p *Peer) context.Context {
	return context.WithValue(ctx, peerKey{}, p)
}

// recordPeer fills in the Peer of ctx, if any, from resp.
func recordPeer(ctx context.Context, resp *http.Response) {
	p, ok := ctx.Value(peerKey{}).(*Peer)
	if !ok || p == nil || resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
		return
	}
	p.Chain = resp.TLS.PeerCertificates
}
