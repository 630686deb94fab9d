package dispatcher

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Without root, installing on this host is refused before anything is
// changed, naming each step that needs root; --dry-run still shows the plan.
func TestInstallNeedsRoot(t *testing.T) {
	old := geteuid
	geteuid = func() int { return 1000 }
	t.Cleanup(func() { geteuid = old })
	w := &world{conf: filepath.Join(t.TempDir(), "dispatcher.conf")}
	prefix := filepath.Join(t.TempDir(), "prefix")

	out, errOut, code := w.cli(t, "install", "--role", "agent", "--prefix", prefix)
	if code != 1 || out != "" {
		t.Errorf("exit %d, stdout %q; want 1 and nothing", code, out)
	}
	for _, want := range []string{
		"these steps need root:\n  create directory " + prefix + "/bin (0755 root:root)\n  copy ",
		"\n  symlink " + prefix + "/bin/dispatcher-agent -> dispatcher\n",
		"run it with sudo",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if _, err := os.Stat(prefix); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused install created %s", prefix)
	}

	out, errOut, code = w.cli(t, "install", "--role", "agent", "--prefix", prefix, "--dry-run")
	if code != 0 || !strings.Contains(out, "create directory "+prefix+"/bin (0755 root:root)\n") || !strings.Contains(out, "\ndry run: ") {
		t.Errorf("dry run: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(prefix); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dry run created %s", prefix)
	}

	if _, errOut, code := w.cli(t, "install", "extra"); code != 2 || !strings.Contains(errOut, "install takes no arguments") {
		t.Errorf("argument: exit %d, %s", code, errOut)
	}
}
