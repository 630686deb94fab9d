package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/dispatcher-dev/dispatcher/bench/fleetsim"
)

// The simulated fleet runs in a process of its own (this program again,
// with -serve-fleet), not in the benchmark process that starts the
// dispatcher: a child's peak RSS as the kernel reports it (rusage) counts
// its parent's memory at the fork, since Go starts children with vfork,
// and a fleet of 10,000 agents holds several hundred MiB.

// fleetInfo is what the fleet process prints once every agent listens.
type fleetInfo struct {
	Conf  string   `json:"conf"`  // dispatcher.conf
	Hosts []string `json:"hosts"` // the agents, in order
}

// serveFleet is the fleet process: it starts n agents in dir, prints a
// fleetInfo line and serves until stdin closes.
func serveFleet(n int, dir string) error {
	f, err := fleetsim.Start(context.Background(), fleetsim.Options{N: n, Dir: dir})
	if err != nil {
		return err
	}
	defer f.Close()
	if err := json.NewEncoder(os.Stdout).Encode(fleetInfo{Conf: f.DispatcherConf, Hosts: f.Hosts}); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

// fleetProc is a running fleet process.
type fleetProc struct {
	fleetInfo
	cmd   *exec.Cmd
	stdin io.Closer
}

// startFleet starts a fleet of n agents in dir in a process of its own.
func startFleet(n int, dir string) (*fleetProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-serve-fleet", strconv.Itoa(n), "-dir", dir)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &fleetProc{cmd: cmd, stdin: stdin}
	line, err := bufio.NewReaderSize(stdout, 1<<20).ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &p.fleetInfo)
	}
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("fleet of %d agents did not start: %w", n, err)
	}
	return p, nil
}

// stop closes the fleet's stdin and waits for it to drain and exit.
func (p *fleetProc) stop() {
	p.stdin.Close()
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// cpu is the CPU time of the fleet process and of the children it has
// waited for (the scripts its agents ran), from /proc/PID/stat.
func (p *fleetProc) cpu() time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	rest := string(b)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	fields := strings.Fields(rest) // fields[0] is field 3 (state)
	var ticks int64
	for _, i := range []int{14, 15, 16, 17} { // utime stime cutime cstime
		if i-3 < len(fields) {
			v, _ := strconv.ParseInt(fields[i-3], 10, 64)
			ticks += v
		}
	}
	return time.Duration(ticks) * time.Second / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100
