package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/dispatcher-dev/dispatcher/pki"
)

// The peers of the Perl dispatcher 0.5.x, as issue 12 describes them, for
// testdata/script/perl_migration.txtar: a client that speaks like the Perl
// dispatcher (LWP) and a test double of the Perl agent. Both use
// certificates made by the openssl command line.
func init() {
	scriptCmds["perlclient"] = cmdPerlClient
	scriptCmds["perlagent"] = cmdPerlAgent
	scriptCmds["samefields"] = cmdSameFields
}

// perlMaxHeaders is the Perl agent's limit on request header lines.
const perlMaxHeaders = 32

// perlclient [-proto HTTP/1.1] CERT KEY CA ADDR METHOD PATH [BODYFILE]:
// one request as the Perl dispatcher's LWP sends it, over TLS with the
// client certificate CERT/KEY, the agent's chain checked against CA but
// not its host name: HTTP/1.0 (or -proto), "TE: deflate,gzip;q=0.3",
// "Connection: TE, close", a libwww-perl User-Agent and the body of
// BODYFILE with Content-Length. It reads the answer until the agent
// closes the connection (which it must within 20 s) and prints it with
// CRLF as LF: status line, header lines, a blank line, the body.
func cmdPerlClient(ts *testscript.TestScript, neg bool, args []string) {
	fs := flag.NewFlagSet("perlclient", flag.ContinueOnError)
	proto := fs.String("proto", "HTTP/1.0", "")
	if err := fs.Parse(args); err != nil || neg || fs.NArg() < 6 || fs.NArg() > 7 {
		ts.Fatalf("usage: perlclient [-proto HTTP/1.1] CERT KEY CA ADDR METHOD PATH [BODYFILE]")
	}
	a := fs.Args()
	cert, err := tls.LoadX509KeyPair(ts.MkAbs(a[0]), ts.MkAbs(a[1]))
	ts.Check(err)
	roots := perlPool(ts, a[2])
	addr, method, path := a[3], a[4], a[5]
	var body []byte
	if len(a) == 7 {
		body = []byte(ts.ReadFile(a[6]))
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{
		Certificates: []tls.Certificate{cert},
		// IO::Socket::SSL as the Perl dispatcher sets it up: the chain is
		// verified, the host name is not.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool()}
			var leaf *x509.Certificate
			for i, r := range raw {
				c, err := x509.ParseCertificate(r)
				if err != nil {
					return err
				}
				if i == 0 {
					leaf = c
				} else {
					opts.Intermediates.AddCert(c)
				}
			}
			if leaf == nil {
				return fmt.Errorf("agent sent no certificate")
			}
			_, err := leaf.Verify(opts)
			return err
		},
	})
	ts.Check(err)
	defer conn.Close()
	var req bytes.Buffer
	fmt.Fprintf(&req, "%s %s %s\r\n", method, path, *proto)
	fmt.Fprintf(&req, "TE: deflate,gzip;q=0.3\r\n")
	fmt.Fprintf(&req, "Connection: TE, close\r\n")
	fmt.Fprintf(&req, "Host: %s\r\n", addr)
	fmt.Fprintf(&req, "User-Agent: libwww-perl/6.72\r\n")
	if body != nil {
		fmt.Fprintf(&req, "Content-Type: application/json\r\n")
		fmt.Fprintf(&req, "Content-Length: %d\r\n", len(body))
	}
	req.WriteString("\r\n")
	req.Write(body)
	ts.Check(conn.SetDeadline(time.Now().Add(20 * time.Second)))
	_, err = conn.Write(req.Bytes())
	ts.Check(err)
	answer, err := io.ReadAll(conn)
	if err != nil {
		ts.Fatalf("%s %s: the agent did not answer and close the connection: %v (read %q)", method, path, err, answer)
	}
	ts.Stdout().Write(bytes.ReplaceAll(answer, []byte("\r\n"), []byte("\n")))
}

// perlPool reads the CA certificates of file.
func perlPool(ts *testscript.TestScript, file string) *x509.CertPool {
	cas, err := pki.ParseCertsPEM([]byte(ts.ReadFile(file)))
	ts.Check(err)
	pool := x509.NewCertPool()
	for _, c := range cas {
		pool.AddCert(c)
	}
	return pool
}

// perlagent [-ip IP] [-pin SERIAL] VAR CERT KEY CA LOG [SCRIPT=OUTPUT]…:
// start a test double of the Perl agent 0.5.4 on IP (default 127.0.0.1)
// and a free port, set VAR to the port; it stops with the script. Like
// the Perl agent it serves TLS with CERT/KEY, wants a client certificate
// chaining to CA (and, with -pin, of serial SERIAL, else 403 "serial
// mismatch"), reads one request per connection — at most 32 header lines
// (else 400), the body by Content-Length only (chunked: 411) — answers
// HTTP/1.0 with Content-Length and closes. POST /ping, POST /run (SCRIPT
// prints OUTPUT and a newline and exits 0; other scripts are refused with
// exit -1 "script not permitted") and GET /capabilities; anything else,
// /renew included, is 404. Each request is appended to LOG: a line
// "REQUEST METHOD PATH PROTO headers=N content-length=L", a line
// "  Name: value" per header, then "ANSWER STATUS" (or "REFUSED STATUS
// reason").
func cmdPerlAgent(ts *testscript.TestScript, neg bool, args []string) {
	fs := flag.NewFlagSet("perlagent", flag.ContinueOnError)
	ip := fs.String("ip", "127.0.0.1", "")
	pinArg := fs.String("pin", "", "")
	if err := fs.Parse(args); err != nil || neg || fs.NArg() < 5 {
		ts.Fatalf("usage: perlagent [-ip IP] [-pin SERIAL] VAR CERT KEY CA LOG [SCRIPT=OUTPUT]…")
	}
	a := fs.Args()
	cert, err := tls.LoadX509KeyPair(ts.MkAbs(a[1]), ts.MkAbs(a[2]))
	ts.Check(err)
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	ts.Check(err)
	d := &perlDouble{
		host:    leaf.Subject.CommonName,
		expiry:  pki.FormatOpenSSLTime(leaf.NotAfter),
		log:     ts.MkAbs(a[4]),
		scripts: map[string]string{},
	}
	if *pinArg != "" {
		pins, err := pki.ParseSerial(*pinArg)
		ts.Check(err)
		d.pin = pki.FormatSerial(pins[0])
	}
	for _, s := range a[5:] {
		name, out, ok := strings.Cut(s, "=")
		if !ok {
			ts.Fatalf("perlagent: want SCRIPT=OUTPUT, got %q", s)
		}
		d.scripts[name] = out
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    perlPool(ts, a[3]),
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(*ip, "0"))
	ts.Check(err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				d.serve(tls.Server(c, cfg))
			}()
		}
	}()
	ts.Defer(func() { ln.Close(); wg.Wait() })
	ts.Setenv(a[0], strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
}

// perlDouble is the state of one perlagent.
type perlDouble struct {
	host, expiry string
	pin          string // FormatSerial of the pinned dispatcher serial; "" = any
	log          string
	scripts      map[string]string
	mu           sync.Mutex // over log
}

func (d *perlDouble) record(lines ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f, err := os.OpenFile(d.log, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	for _, l := range lines {
		fmt.Fprintln(f, l)
	}
}

// serve reads one request from c, answers it and closes c.
func (d *perlDouble) serve(c *tls.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if err := c.Handshake(); err != nil {
		d.record("HANDSHAKE " + err.Error())
		return
	}
	br := bufio.NewReader(io.LimitReader(c, 1<<20))
	line, err := br.ReadString('\n')
	if err != nil {
		return
	}
	method, rest, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
	path, proto, _ := strings.Cut(rest, " ")
	var headers []string
	cl, chunked := -1, false
	for {
		h, err := br.ReadString('\n')
		if err != nil {
			return
		}
		h = strings.TrimRight(h, "\r\n")
		if h == "" {
			break
		}
		headers = append(headers, "  "+h)
		name, val, _ := strings.Cut(h, ":")
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "content-length":
			cl, _ = strconv.Atoi(strings.TrimSpace(val))
		case "transfer-encoding":
			chunked = true
		}
	}
	d.record(append([]string{fmt.Sprintf("REQUEST %s %s %s headers=%d content-length=%d", method, path, proto, len(headers), cl)}, headers...)...)
	refuse := func(status int, reason string) {
		d.record(fmt.Sprintf("REFUSED %d %s", status, reason))
		d.answer(c, status, map[string]any{"error": reason})
	}
	switch {
	case len(headers) > perlMaxHeaders:
		refuse(400, "too many headers")
		return
	case chunked:
		refuse(411, "chunked body refused")
		return
	}
	body := make([]byte, max(cl, 0))
	if _, err := io.ReadFull(br, body); err != nil {
		refuse(400, "short body")
		return
	}
	if peer := c.ConnectionState().PeerCertificates; d.pin != "" && pki.FormatSerial(peer[0].SerialNumber) != d.pin {
		refuse(403, "serial mismatch")
		return
	}
	var in struct {
		Script string   `json:"script"`
		Args   []string `json:"args"`
		ReqID  string   `json:"reqid"`
	}
	if method == "POST" && json.Unmarshal(body, &in) != nil {
		refuse(400, "bad json")
		return
	}
	switch method + " " + path {
	case "POST /ping":
		d.answer(c, 200, map[string]any{"status": "ok", "host": d.host, "version": "0.5.4", "expiry": d.expiry, "reqid": in.ReqID})
	case "POST /run":
		out, ok := d.scripts[in.Script]
		if !ok {
			d.answer(c, 200, map[string]any{"script": in.Script, "exit": -1, "stdout": "", "stderr": "", "error": "script not permitted", "reqid": in.ReqID})
			return
		}
		d.answer(c, 200, map[string]any{"script": in.Script, "exit": 0, "stdout": out + "\n", "stderr": "", "reqid": in.ReqID})
	case "GET /capabilities":
		var names []string
		for n := range d.scripts {
			names = append(names, n)
		}
		sort.Strings(names)
		scripts := []map[string]any{}
		for _, n := range names {
			scripts = append(scripts, map[string]any{"name": n, "path": "/usr/local/bin/" + n, "executable": true})
		}
		d.answer(c, 200, map[string]any{"status": "ok", "host": d.host, "version": "0.5.4", "tags": map[string]string{}, "scripts": scripts})
	default:
		d.answer(c, 404, map[string]any{"error": "not found"})
	}
}

// answer writes an HTTP/1.0 answer with Content-Length, as the Perl agent
// does, and logs its status.
func (d *perlDouble) answer(c *tls.Conn, status int, v any) {
	b, _ := json.Marshal(v)
	if status == 200 || status == 404 {
		d.record(fmt.Sprintf("ANSWER %d", status))
	}
	text := map[int]string{200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 411: "Length Required"}[status]
	fmt.Fprintf(c, "HTTP/1.0 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", status, text, len(b), b)
}

// samefields BEFORE AFTER [FIELD]…: AFTER, a JSON object, has every field
// of BEFORE with the same value byte for byte (as compact JSON), and
// exactly the named FIELDs besides (a registry record read before and
// after a dispatcher wrote to it: what it added, nothing else changed).
func cmdSameFields(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: samefields BEFORE AFTER [FIELD]…")
	}
	read := func(file string) map[string]string {
		var raw map[string]json.RawMessage
		if err := json.Unmarshal([]byte(ts.ReadFile(file)), &raw); err != nil {
			ts.Fatalf("%s: %v", file, err)
		}
		out := make(map[string]string, len(raw))
		for k, v := range raw {
			var b bytes.Buffer
			ts.Check(json.Compact(&b, v))
			out[k] = b.String()
		}
		return out
	}
	before, after := read(args[0]), read(args[1])
	added := map[string]bool{}
	for _, f := range args[2:] {
		added[f] = true
		if _, ok := after[f]; !ok {
			ts.Fatalf("%s has no field %q", args[1], f)
		}
		if _, ok := before[f]; ok {
			ts.Fatalf("%s has field %q already", args[0], f)
		}
	}
	for k, v := range before {
		if w, ok := after[k]; !ok {
			ts.Fatalf("%s lost field %q (%s)", args[1], k, v)
		} else if w != v {
			ts.Fatalf("field %q changed from %s to %s", k, v, w)
		}
	}
	for k, v := range after {
		if _, ok := before[k]; !ok && !added[k] {
			ts.Fatalf("%s has a new field %q: %s", args[1], k, v)
		}
	}
}
