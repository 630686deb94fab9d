package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a child process of the real binary: an agent or the API.
type proc struct {
	cmd  *exec.Cmd
	log  string
	done chan error
}

// startProc starts bin with args, its output to logFile, and waits until
// addr accepts connections.
func startProc(bin, logFile, addr string, env []string, args ...string) (*proc, error) {
	out, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, err
	}
	p := &proc{cmd: cmd, log: logFile, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); out.Close() }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return p, nil
		}
		select {
		case err := <-p.done:
			p.done <- err
			return nil, fmt.Errorf("%s %s exited: %v\n%s", bin, args[0], err, logTail(logFile))
		default:
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%s %s: nothing listens on %s after 20 s\n%s", bin, args[0], addr, logTail(logFile))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for the process (SIGKILL after 30 s).
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		p.done <- <-p.done
	}
}

// rss is a process's resident memory in KiB: in all (VmRSS), anonymous
// (heap, stacks) and file-backed (the binary's pages it has touched).
type rss struct{ total, anon, file int64 }

// rss reads the process's resident set size now.
func (p *proc) rss() (rss, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/status")
	if err != nil {
		return rss{}, err
	}
	defer f.Close()
	var r rss
	fields := map[string]*int64{"VmRSS:": &r.total, "RssAnon:": &r.anon, "RssFile:": &r.file}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		for name, dst := range fields {
			if rest, ok := strings.CutPrefix(sc.Text(), name); ok {
				*dst, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			}
		}
	}
	if r.total == 0 {
		return r, fmt.Errorf("no VmRSS in /proc/%d/status", p.cmd.Process.Pid)
	}
	return r, nil
}

func logTail(path string) string {
	b, _ := os.ReadFile(path)
	return lastLines(string(b))
}

// freePort is a TCP port free on 127.0.0.1 right now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// percentile of sorted-or-not durations, nearest rank; 0 for none.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p/100*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// median of what f picks from each item.
func median[T any, V int64 | float64 | time.Duration](items []T, f func(T) V) V {
	vs := make([]V, len(items))
	for i, it := range items {
		vs[i] = f(it)
	}
	slices.Sort(vs)
	if len(vs) == 0 {
		return 0
	}
	return vs[len(vs)/2]
}

// spread is the smallest and largest of what f picks.
func spread[T any, V int64 | float64 | time.Duration](items []T, f func(T) V) (lo, hi V) {
	for i, it := range items {
		v := f(it)
		if i == 0 || v < lo {
			lo = v
		}
		if i == 0 || v > hi {
			hi = v
		}
	}
	return lo, hi
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
