package wire

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"

	"github.com/dispatcher-dev/dispatcher/pki/pkitest"
)

// WithPeer records the agent certificate of the connection an answer came
// on: on a new connection, a kept-alive one and a resumed session alike,
// and also for a refusal; a request that got no answer leaves it alone.
func TestWithPeer(t *testing.T) {
	ca := pkitest.NewCA(t)
	cert := ca.Agent(t, "web-01")
	mux := http.NewServeMux()
	mux.Handle("/", agentMux("web-01"))
	mux.HandleFunc("POST "+PathRenew, func(w http.ResponseWriter, r *http.Request) { WriteError(w, http.StatusNotFound, "not found") })
	a := startAgent(t, ca, "web-01", agentOpts{cert: &cert, handler: mux})
	c := newClient(t, ca, nil)
	for i, step := range []func(ctx context.Context) error{
		func(ctx context.Context) error { _, err := c.Ping(ctx, a.target, PingRequest{}); return err },            // new connection
		func(ctx context.Context) error { _, err := c.Ping(ctx, a.target, PingRequest{}); return err },            // kept alive
		func(ctx context.Context) error { c.Close(); _, err := c.Ping(ctx, a.target, PingRequest{}); return err }, // resumed
		func(ctx context.Context) error {
			_, err := c.Renew(ctx, a.target, RenewRequest{})
			if errors.Is(err, ErrNotFound) {
				return nil
			}
			return err
		}, // refused
	} {
		var p Peer
		if err := step(WithPeer(context.Background(), &p)); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if leaf := p.Leaf(); leaf == nil || !leaf.Equal(cert.Leaf) {
			t.Errorf("step %d: peer leaf %v, want the agent's certificate", i, leaf)
		}
	}
	if a.resumed.Load() != 1 {
		t.Errorf("%d resumed handshakes, want 1", a.resumed.Load())
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	p := Peer{}
	_, err = c.Ping(WithPeer(context.Background(), &p), Target{Host: "web-01", Addr: dead}, PingRequest{})
	if err == nil || p.Leaf() != nil {
		t.Errorf("no answer: %v, peer %v", err, p.Leaf())
	}
}
