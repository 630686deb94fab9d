package dispatcher

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/internal/cmdutil"
	"github.com/dispatcher-dev/dispatcher/roles/internal/control"
)

func setupCACommand() *cli.Command {
	return &cli.Command{
		Name:  "setup-ca",
		Usage: "create the private CA (ca.key, ca.crt) that every identity is issued from",
		Description: "Writes the CA key (mode 0600) and certificate (0644) to the paths of ca_key and ca\n" +
			"in dispatcher.conf. Existing files are never replaced without --force; with --force\n" +
			"they are kept beside the new ones as FILE.old-TIMESTAMP. Replacing the CA means\n" +
			"every agent has to pair again.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Usage: "replace an existing CA (agents paired with it must pair again)"},
			&cli.StringFlag{Name: "cn", Usage: "common name of the CA certificate (default: \"dispatcher CA on HOSTNAME\")"},
		},
		Action: func(c *cli.Context) error {
			e, err := load(c)
			if err != nil {
				return err
			}
			defer e.close()
			cn := c.String("cn")
			if cn == "" {
				host, _ := os.Hostname()
				cn = strings.TrimSpace("dispatcher CA on " + host)
			}
			at := control.Pair{Cert: e.cfg.CA, Key: e.cfg.CAKey}
			w, err := control.SetupCA(pki.Options{}, e.log, at, cn, c.Bool("force"))
			if err != nil {
				return explainExists(err, "the CA", "every agent paired with it would have to pair again")
			}
			return report(c, "CA", w, "next: dispatcher setup-dispatcher")
		},
	}
}

func setupDispatcherCommand() *cli.Command {
	return &cli.Command{
		Name:  "setup-dispatcher",
		Usage: "issue the dispatcher's own key and certificate from the CA",
		Description: "Writes dispatcher.key (0600) and dispatcher.crt (0644) to the paths of key and cert\n" +
			"in dispatcher.conf, signed by the CA for cert_days days. Existing files are never\n" +
			"replaced without --force. When agents are registered it asks for confirmation\n" +
			"first (or takes --yes): agents still pinned to the old certificate's serial refuse\n" +
			"the new one until they learn it.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Usage: "replace an existing dispatcher key and certificate"},
			&cli.BoolFlag{Name: "yes", Usage: "do not ask for confirmation when agents are registered"},
			&cli.StringSliceFlag{Name: "dns-name", Usage: "DNS name to put in the certificate (repeatable; default: this host's name)"},
		},
		Action: func(c *cli.Context) error {
			e, err := load(c)
			if err != nil {
				return err
			}
			defer e.close()
			at := control.Pair{Cert: e.cfg.Cert, Key: e.cfg.Key}
			if err := control.RefuseExisting(at, c.Bool("force")); err != nil {
				return explainExists(err, "the dispatcher identity", "agents pinned to its serial would refuse the new one")
			}
			if !c.Bool("yes") {
				st, err := cmdutil.OpenStore(c.Context, e.cfg, e.log)
				if err != nil {
					return err
				}
				err = confirmWithAgents(c, st)
				_ = st.Close()
				if err != nil {
					return err
				}
			}
			names := c.StringSlice("dns-name")
			if len(names) == 0 {
				if host, err := os.Hostname(); err == nil && pki.ValidHostname(host) == nil {
					names = []string{host}
				}
			}
			w, err := control.SetupDispatcher(pki.Options{}, e.log, control.DispatcherIdentity{
				CA:       control.Pair{Cert: e.cfg.CA, Key: e.cfg.CAKey},
				At:       at,
				Days:     e.cfg.CertDays,
				DNSNames: names,
				Force:    c.Bool("force"),
			})
			var missing *control.MissingCAError
			if errors.As(err, &missing) {
				return fmt.Errorf("%w: run 'dispatcher setup-ca' first (or fix ca and ca_key in %s)", err, c.String("config"))
			}
			if err != nil {
				return explainExists(err, "the dispatcher identity", "agents pinned to its serial would refuse the new one")
			}
			return report(c, "dispatcher certificate", w, "next: pair agents (dispatcher pairing-mode)")
		},
	}
}

// confirmWithAgents asks before replacing the identity registered agents
// know. Without an answer (no terminal, empty input) it refuses.
func confirmWithAgents(c *cli.Context, reg interface{ AgentNames() ([]string, error) }) error {
	names, err := reg.AgentNames()
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return nil
	}
	fmt.Fprintf(c.App.ErrWriter, "%d agent(s) are registered (%s).\n"+
		"Agents pinned to the current dispatcher certificate's serial will refuse the new one until they learn it.\n"+
		"Issue a new dispatcher certificate? [y/N] ", len(names), summarize(names, 5))
	return confirm(c)
}

// confirm reads the answer to a question: y or yes goes on, anything else
// (no terminal, empty input) refuses.
func confirm(c *cli.Context) error {
	line, _ := bufio.NewReader(c.App.Reader).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return fmt.Errorf("not confirmed: nothing changed (answer y, or pass --yes to skip the question)")
}

func summarize(names []string, max int) string {
	if len(names) <= max {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:max], ", "), len(names)-max)
}

// explainExists turns an ExistsError into advice; other errors pass.
func explainExists(err error, what, consequence string) error {
	var ex *control.ExistsError
	if !errors.As(err, &ex) {
		return err
	}
	return fmt.Errorf("%w: refusing to replace %s (%s); nothing was changed. Use --force to replace it; the old files are kept as FILE.old-TIMESTAMP", err, what, consequence)
}

func report(c *cli.Context, what string, w *control.Written, next string) error {
	if c.Bool("json") {
		return writeJSON(c, map[string]any{
			"ok":          true,
			"cert":        w.Paths.Cert,
			"key":         w.Paths.Key,
			"serial":      pki.FormatSerial(w.Cert.SerialNumber),
			"not_after":   w.Cert.NotAfter.UTC(),
			"fingerprint": w.Fingerprint,
			"replaced":    w.Replaced,
		})
	}
	out := c.App.Writer
	fmt.Fprintf(out, "created %s\n", what)
	fmt.Fprintf(out, "  certificate  %s (%04o)\n", w.Paths.Cert, control.ModeCertificate)
	fmt.Fprintf(out, "  key          %s (%04o)\n", w.Paths.Key, control.ModePrivateKey)
	fmt.Fprintf(out, "  subject      %s\n", w.Cert.Subject.CommonName)
	fmt.Fprintf(out, "  expires      %s\n", pki.FormatOpenSSLTime(w.Cert.NotAfter))
	fmt.Fprintf(out, "  fingerprint  %s\n", w.Fingerprint)
	for _, r := range w.Replaced {
		fmt.Fprintf(out, "  kept old     %s\n", r)
	}
	fmt.Fprintln(out, next)
	return nil
}
