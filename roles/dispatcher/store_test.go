package dispatcher

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/dispatcher-dev/dispatcher/internal/pgtest"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store/backend"
)

// store = "postgres://…": the commands keep their state in PostgreSQL, and
// "store migrate" applies the schema once.
func TestStorePostgres(t *testing.T) {
	url := pgtest.Start(t).NewDB(t)
	w := newWorld(t, true)
	f, err := os.OpenFile(w.conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("store = \"" + url + "\"\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()

	stdout, stderr, code := w.cli(t, "store", "migrate")
	if code != 0 || !strings.HasPrefix(stdout, "applied migrations 1") {
		t.Fatalf("first store migrate: exit %d, %q %q", code, stdout, stderr)
	}
	stdout, stderr, code = w.cli(t, "store", "migrate")
	if code != 0 || stdout != "the schema is up to date\n" {
		t.Fatalf("second store migrate: exit %d, %q %q", code, stdout, stderr)
	}

	st, err := backend.Open(context.Background(), url, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.PutAgent(store.Agent{Hostname: "web-01", IP: "10.0.0.1", Port: 7443, Tags: map[string]string{"role": "web"}}); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code = w.cli(t, "list-agents", "--json")
	var agents []map[string]any
	if err := json.Unmarshal([]byte(stdout), &agents); code != 0 || err != nil || len(agents) != 1 || agents[0]["hostname"] != "web-01" || agents[0]["ip"] != "10.0.0.1" {
		t.Fatalf("list-agents --json from PostgreSQL: exit %d, %v, %q %q", code, err, stdout, stderr)
	}
	if _, err := os.Stat(w.dir + "/state/agents"); !os.IsNotExist(err) {
		t.Errorf("state_dir was written although the store is PostgreSQL: %v", err)
	}
}

// With the files store there is nothing to migrate, and the command says so.
func TestStoreMigrateFiles(t *testing.T) {
	w := newWorld(t, true)
	_, stderr, code := w.cli(t, "store", "migrate")
	if code != 1 || !strings.Contains(stderr, "files store") {
		t.Errorf("store migrate on files: exit %d %q", code, stderr)
	}
}
