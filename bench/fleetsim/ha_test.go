package fleetsim_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dispatcher-dev/dispatcher/bench/fleetsim"
	"github.com/dispatcher-dev/dispatcher/internal/pgtest"
)

// haDuration is how long the clients of TestHANoLostResults keep running.
const haDuration = 30 * time.Second

// Two API nodes on one PostgreSQL in front of 100 simulated agents; 20
// clients run noop through both nodes for 30 s, each on its own five
// hosts (runs of one host:script are serialised by design). Every run
// answered 200 must then have a stored, complete result that the other
// node serves: nothing is lost between the nodes and the database.
func TestHANoLostResults(t *testing.T) {
	if testing.Short() {
		t.Skip("30 s of load")
	}
	url := pgtest.Start(t).NewDB(t)
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	ports := [2]int{freePort(t), freePort(t)}
	f, err := fleetsim.Start(context.Background(), fleetsim.Options{N: 100, Dir: dir,
		Dispatcher: fmt.Sprintf("store = %q\napi_auth_default = \"allow\"\napi_bind = \"127.0.0.1\"\nrenew_interval = 0\n", url)})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// The simulator registers its agents in state_dir; into the database
	// they go, as an operator moving to PostgreSQL does it.
	if out, err := exec.Command(bin, "store", "import", "--from", filepath.Join(dir, "state"), "--config", f.DispatcherConf).CombinedOutput(); err != nil {
		t.Fatalf("store import: %v\n%s", err, out)
	}
	var nodes [2]string
	for i, port := range ports {
		cmd := exec.Command(bin, "api", "--config", f.DispatcherConf, "--port", strconv.Itoa(port))
		logFile, err := os.Create(filepath.Join(dir, fmt.Sprintf("api-%d.log", i)))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logFile, logFile
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); logFile.Close() })
		nodes[i] = "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		waitPort(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	}

	type answered struct {
		reqid string
		hosts []string
		node  int
	}
	var mu sync.Mutex
	var runs []answered
	var failures []string
	deadline := time.Now().Add(haDuration)
	var wg sync.WaitGroup
	for c := range 20 {
		hosts := f.Hosts[5*c : 5*c+5]
		wg.Go(func() {
			body, _ := json.Marshal(map[string]any{"hosts": hosts, "script": fleetsim.ScriptNoop})
			for i := 0; time.Now().Before(deadline); i++ {
				node := (c + i) % 2
				resp, err := http.Post(nodes[node]+"/run", "application/json", strings.NewReader(string(body)))
				if err != nil {
					mu.Lock()
					failures = append(failures, err.Error())
					mu.Unlock()
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var r struct {
					OK    bool   `json:"ok"`
					ReqID string `json:"reqid"`
				}
				if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &r) != nil || !r.OK {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("node %d: %s %s", node, resp.Status, b))
					mu.Unlock()
					return
				}
				mu.Lock()
				runs = append(runs, answered{r.ReqID, hosts, node})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d clients failed; first: %s", len(failures), failures[0])
	}
	if len(runs) < 100 {
		t.Fatalf("only %d runs answered in %s", len(runs), haDuration)
	}
	for _, r := range runs {
		other := nodes[1-r.node]
		resp, err := http.Get(other + "/status/" + r.reqid)
		if err != nil {
			t.Fatal(err)
		}
		var st struct {
			Status  string `json:"status"`
			Results []struct {
				Host string `json:"host"`
				Exit int    `json:"exit"`
			} `json:"results"`
		}
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || st.Status != "done" || len(st.Results) != len(r.hosts) {
			t.Fatalf("run %s (answered by node %d) on the other node: %s, %+v, %v", r.reqid, r.node, resp.Status, st, err)
		}
		for i, res := range st.Results {
			if res.Host != r.hosts[i] || res.Exit != 0 {
				t.Fatalf("run %s: result %d is %+v, want %s exit 0", r.reqid, i, res, r.hosts[i])
			}
		}
	}
	t.Logf("%d runs through two nodes in %s, every result stored and served by the other node", len(runs), haDuration)
}

func buildBinary(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "dispatcher")
	build := exec.Command("go", "build", "-o", bin, "github.com/dispatcher-dev/dispatcher")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitPort(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
