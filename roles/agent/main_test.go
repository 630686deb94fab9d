package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/dispatcher-dev/dispatcher/roles/internal/cmdutil"
)

// TestMain lets the test binary act as dispatcher-agent when it is started
// under that name, as request-pairing --background starts its waiting
// process; otherwise it runs the tests.
func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "dispatcher-agent" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := runApp(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// runApp runs the agent's commands as roles.Main does (which this package
// cannot import): errors printed as "dispatcher-agent: …", exit code from
// cmdutil.Code.
func runApp(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := &cli.App{
		Name:           "dispatcher-agent",
		Writer:         stdout,
		ErrWriter:      stderr,
		Commands:       Commands(),
		ExitErrHandler: func(*cli.Context, error) {},
	}
	err := app.RunContext(ctx, append([]string{"dispatcher-agent"}, args...))
	var ee *cmdutil.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.Err == nil) {
		fmt.Fprintf(stderr, "dispatcher-agent: %v\n", err)
	}
	return cmdutil.Code(err)
}

// result is one command run in-process.
type result struct {
	code           int
	stdout, stderr string
}

func agentCmd(t *testing.T, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := runApp(context.Background(), args, &out, &errOut)
	t.Logf("dispatcher-agent %v: exit %d\nstdout:\n%s\nstderr:\n%s", args, code, out.String(), errOut.String())
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}
