package httplimit

import (
	"net"
	"net/http"
	"testing"
	"time"
)

func TestListenerBound(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := NewListener(inner, 2)
	defer ln.Close()
	accepted := make(chan net.Conn, 3)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	for range 3 {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	first, second := <-accepted, <-accepted
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted with two open and a bound of 2")
	case <-time.After(200 * time.Millisecond):
	}
	if ln.Open() != 2 || ln.Peak() != 2 {
		t.Errorf("open %d peak %d, want 2 and 2", ln.Open(), ln.Peak())
	}
	first.Close()
	first.Close() // a second close gives nothing back twice
	third := <-accepted
	defer third.Close()
	second.Close()
	if ln.Open() != 1 || ln.Peak() != 2 {
		t.Errorf("open %d peak %d, want 1 and 2", ln.Open(), ln.Peak())
	}
}

func TestListenerCloseEndsWaitingAccept(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := NewListener(inner, 1)
	c, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := ln.Accept(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { _, err := ln.Accept(); done <- err }()
	ln.Close()
	if err := <-done; err == nil {
		t.Fatal("Accept waiting for a slot returned a connection after Close")
	}
}

func TestCleanPathAndHeaderLines(t *testing.T) {
	for p, want := range map[string]bool{
		"/status/abc": true, "/runs/abc/events": true, "/": true, "/status/": true,
		"": false, "status": false, "/status/../x": false, "/./x": false, "//x": false, "/a//b": false, "/..": false,
	} {
		if got := CleanPath(p); got != want {
			t.Errorf("CleanPath(%q) = %v, want %v", p, got, want)
		}
	}
	r, _ := http.NewRequest("GET", "http://h/", nil)
	r.Header.Add("A", "1")
	r.Header.Add("A", "2")
	r.Header.Add("B", "3")
	if n := HeaderLines(r); n != 4 {
		t.Errorf("HeaderLines = %d, want 4 (Host and three values)", n)
	}
}
