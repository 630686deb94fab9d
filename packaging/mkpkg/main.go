package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

const (
	homepage   = "https://github.com/dispatcher-dev/dispatcher"
	maintainer = "dispatcher developers <dispatcher-dev@users.noreply.github.com>"
	summary    = "run allowlisted scripts on agent hosts over mutual TLS"
)

// description is the long description of both packages.
const description = `One static binary with four roles: the dispatcher (CLI), the agent
daemon (port 7443), the HTTP API (port 7445) and the pairing listener
(port 7444). Agents run only the scripts their allowlist names, for a
dispatcher that proves its identity with a certificate of a private CA.

The package installs the binary, its role symlinks, the service files and
the example configurations; no service is enabled. Pair an agent with
dispatcher-agent request-pairing before starting it.`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// usageError is a bad command line: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// options are the command line.
type options struct {
	bin, version, out, arch, licence string
	epoch                            time.Time
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseArgs(args, stderr)
	if err == nil {
		var files []string
		if files, err = build(o); err == nil {
			for _, f := range files {
				fmt.Fprintln(stdout, f)
			}
			return 0
		}
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintf(stderr, "mkpkg: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

func parseArgs(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("mkpkg", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.bin, "bin", "./dispatcher", "the static `binary` to package")
	fs.StringVar(&o.version, "version", "", "the `version` (git describe style: v1.2.3, v1.2.3-4-gabc)")
	fs.StringVar(&o.out, "out", "dist", "the `directory` to write the packages to")
	goarch := os.Getenv("GOARCH")
	if goarch == "" {
		goarch = runtime.GOARCH
	}
	fs.StringVar(&o.arch, "arch", goarch, "the binary's `GOARCH`")
	fs.StringVar(&o.licence, "licence", "LICENCE", "the licence `file` shipped with the packages")
	epoch := fs.String("epoch", os.Getenv("SOURCE_DATE_EPOCH"), "the entries' mtime, Unix `seconds` (default $SOURCE_DATE_EPOCH, else the last commit's time)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: mkpkg -bin BINARY -version VERSION [-out DIR] [-arch GOARCH]\n\nwrites DIR/dispatcher_VERSION_ARCH.deb and DIR/dispatcher-VERSION-r0.apk\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return o, usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	if o.version == "" {
		return o, usageError{"-version is required"}
	}
	if debArch[o.arch] == "" {
		return o, usageError{fmt.Sprintf("-arch %q: not an architecture mkpkg knows", o.arch)}
	}
	t, err := sourceDate(*epoch)
	if err != nil {
		return o, err
	}
	o.epoch = t
	return o, nil
}

// sourceDate is the time every entry carries: SOURCE_DATE_EPOCH (or
// -epoch), else the committer time of HEAD.
func sourceDate(epoch string) (time.Time, error) {
	if epoch == "" {
		out, err := exec.Command("git", "log", "-1", "--format=%ct").Output()
		if err != nil {
			return time.Time{}, fmt.Errorf("no SOURCE_DATE_EPOCH and no git commit to date the entries by (%v): set SOURCE_DATE_EPOCH", err)
		}
		epoch = strings.TrimSpace(string(out))
	}
	n, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: want Unix seconds", epoch)
	}
	return time.Unix(n, 0).UTC(), nil
}

// build writes both packages and returns their paths.
func build(o options) ([]string, error) {
	bin, err := os.ReadFile(o.bin)
	if err != nil {
		return nil, fmt.Errorf("read the binary: %w (run make build first)", err)
	}
	licence, err := os.ReadFile(o.licence)
	if err != nil {
		return nil, fmt.Errorf("read the licence: %w", err)
	}
	dv, err := debVersion(o.version)
	if err != nil {
		return nil, err
	}
	av := apkVersion(o.version, o.epoch)
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return nil, err
	}

	debFiles, err := contents("deb", bin, licence)
	if err != nil {
		return nil, err
	}
	deb, err := buildDeb(debFiles, dv, debArch[o.arch], o.epoch)
	if err != nil {
		return nil, fmt.Errorf("build the .deb: %w", err)
	}
	apkFiles, err := contents("apk", bin, licence)
	if err != nil {
		return nil, err
	}
	apk, err := buildApk(apkFiles, av+"-r0", apkArch[o.arch], o.epoch)
	if err != nil {
		return nil, fmt.Errorf("build the .apk: %w", err)
	}

	debPath := filepath.Join(o.out, fmt.Sprintf("dispatcher_%s_%s.deb", dv, debArch[o.arch]))
	apkPath := filepath.Join(o.out, fmt.Sprintf("dispatcher-%s-r0.apk", av))
	for _, f := range []struct {
		path string
		data []byte
	}{{debPath, deb}, {apkPath, apk}} {
		if err := writeFile(f.path, f.data); err != nil {
			return nil, err
		}
	}
	return []string{debPath, apkPath}, nil
}

// writeFile writes data to path through a temporary file in its directory.
func writeFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".mkpkg-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
