package dispatcher

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/internal/cmdutil"
	"github.com/dispatcher-dev/dispatcher/roles/internal/control"
	"github.com/dispatcher-dev/dispatcher/roles/internal/output"
)

func renewCommand() *cli.Command {
	return &cli.Command{
		Name:      "renew",
		Usage:     "renew agent certificates now, whether due or not",
		ArgsUsage: "HOST…",
		Description: "Asks each registered agent for a certificate request for its current key, signs it with\n" +
			"the CA for cert_days days and installs it on the agent, which serves it from its next\n" +
			"handshake on without a restart. Renewal also happens by itself after any run, ping or\n" +
			"discover once less than half of cert_days is left. Exits 0 when every host was renewed.",
		Flags: fanoutFlags(),
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return cmdutil.Usagef("renew needs at least one host: dispatcher renew HOST…")
			}
			return withEngine(c, func(eng *control.Engine, port, parallel int) error {
				report, err := eng.Renew(c.Context, control.RenewRequest{Hosts: c.Args().Slice(), Port: port, Parallel: parallel})
				var missing *control.MissingCAError
				if errors.As(err, &missing) {
					return fmt.Errorf("%w: renewing signs with the CA key; run as a user that can read it (or fix ca and ca_key in %s)", err, c.String("config"))
				}
				if err != nil {
					return err
				}
				all := true
				for _, r := range report.Results {
					all = all && r.Status == control.RenewRenewed
				}
				if c.Bool("json") {
					report.OK = all
					return exitFor(all, writeJSON(c, report))
				}
				return exitFor(all, writeRenewTable(c.App.Writer, report.Results))
			})
		},
	}
}

// writeRenewTable writes HOST STATUS OLD SERIAL SERIAL EXPIRY ERROR.
func writeRenewTable(w io.Writer, results []control.RenewResult) error {
	t := output.NewTable("HOST", "STATUS", "OLD SERIAL", "SERIAL", "EXPIRY", "ERROR")
	for _, r := range results {
		t.Row(r.Host, r.Status, r.OldSerial, r.Serial, r.Expiry, r.Error)
	}
	return t.Write(w)
}

func rotateCertCommand() *cli.Command {
	return &cli.Command{
		Name:  "rotate-cert",
		Usage: "replace the dispatcher's own key and certificate; agents need no re-pairing",
		Description: "Issues a new dispatcher key and certificate from the CA (the old files are kept as\n" +
			"FILE.old-TIMESTAMP) and records the rotation in state_dir/rotation.json. Agents accept the\n" +
			"new certificate at once: they check its dispatcher role, not its serial. Agents still\n" +
			"pinned to a serial (Perl agents, migrated fleets) are marked pending and told the new\n" +
			"serial at their next contact; after cert_overlap_days those not reached are stale\n" +
			"(dispatcher serial-status). The old certificate stays valid for agents until it expires\n" +
			"or is revoked: --revoke-old, or later dispatcher revoke OLD-SERIAL.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "yes", Usage: "do not ask for confirmation when agents are registered"},
			&cli.BoolFlag{Name: "revoke-old", Usage: "revoke the old certificate: agents refuse it after their next contact"},
			&cli.StringSliceFlag{Name: "dns-name", Usage: "DNS name to put in the certificate (repeatable; default: those of the old certificate)"},
		},
		Action: func(c *cli.Context) error {
			e, st, err := loadStore(c)
			if err != nil {
				return err
			}
			defer e.close()
			if !c.Bool("yes") {
				if err := confirmRotation(c, st); err != nil {
					return err
				}
			}
			res, err := control.RotateCert(control.RotateOptions{
				Identity: control.DispatcherIdentity{
					CA:       control.Pair{Cert: e.cfg.CA, Key: e.cfg.CAKey},
					At:       control.Pair{Cert: e.cfg.Cert, Key: e.cfg.Key},
					Days:     e.cfg.CertDays,
					DNSNames: c.StringSlice("dns-name"),
				},
				OverlapDays: e.cfg.CertOverlapDays,
				RevokeOld:   c.Bool("revoke-old"),
				Registry:    st, Rotations: st, Revocations: st,
				Log: e.log,
			})
			var missing *control.MissingCAError
			if errors.As(err, &missing) {
				return fmt.Errorf("%w: rotate-cert signs with the CA key; run as a user that can read it (or fix ca and ca_key in %s)", err, c.String("config"))
			}
			if res == nil {
				return err
			}
			if werr := reportRotation(c, res); werr != nil {
				return werr
			}
			return err // the new certificate is in place; what else failed
		},
	}
}

// confirmRotation asks before replacing the identity registered agents
// know; without an answer it refuses.
func confirmRotation(c *cli.Context, reg interface{ AgentNames() ([]string, error) }) error {
	names, err := reg.AgentNames()
	if err != nil || len(names) == 0 {
		return err
	}
	fmt.Fprintf(c.App.ErrWriter, "%d agent(s) are registered (%s).\n"+
		"They accept the new certificate at once; agents pinned to the current serial are told the new one at their next contact.\n"+
		"Replace the dispatcher certificate? [y/N] ", len(names), summarize(names, 5))
	return confirm(c)
}

func reportRotation(c *cli.Context, res *control.RotateResult) error {
	rot, w := res.Rotation, res.Written
	if c.Bool("json") {
		return writeJSON(c, map[string]any{
			"ok":              true,
			"serial":          rot.CurrentSerial,
			"previous_serial": rot.PreviousSerial,
			"rotated_at":      rot.RotatedAt.UTC().Format(time.RFC3339),
			"overlap_expires": rot.OverlapExpires.UTC().Format(time.RFC3339),
			"not_after":       w.Cert.NotAfter.UTC(),
			"cert":            w.Paths.Cert,
			"key":             w.Paths.Key,
			"replaced":        w.Replaced,
			"agents_pending":  res.Pending,
			"revoked_old":     res.RevokedOld,
		})
	}
	out := c.App.Writer
	fmt.Fprintf(out, "rotated the dispatcher certificate\n")
	was := rot.PreviousSerial
	if was == "" {
		was = "none"
	}
	fmt.Fprintf(out, "  serial       %s (was %s)\n", rot.CurrentSerial, was)
	fmt.Fprintf(out, "  expires      %s\n", pki.FormatOpenSSLTime(w.Cert.NotAfter))
	fmt.Fprintf(out, "  certificate  %s (%04o)\n", w.Paths.Cert, control.ModeCertificate)
	fmt.Fprintf(out, "  key          %s (%04o)\n", w.Paths.Key, control.ModePrivateKey)
	for _, r := range w.Replaced {
		fmt.Fprintf(out, "  kept old     %s\n", r)
	}
	fmt.Fprintf(out, "  overlap      until %s (cert_overlap_days = %d)\n", rot.OverlapExpires.UTC().Format(time.RFC3339), rot.OverlapDays)
	fmt.Fprintf(out, "%d agent(s) pending the new serial: each is told at its next contact (dispatcher serial-status)\n", res.Pending)
	switch {
	case res.RevokedOld:
		fmt.Fprintf(out, "the old certificate (serial %s) is revoked: agents refuse it after their next contact\n", rot.PreviousSerial)
	case rot.PreviousSerial != "":
		fmt.Fprintf(out, "the old certificate stays valid for agents until it expires; to retire it: dispatcher revoke %s\n", rot.PreviousSerial)
	}
	return nil
}

func revokeCommand() *cli.Command {
	return &cli.Command{
		Name:      "revoke",
		Usage:     "revoke an agent (by host name) or a certificate serial",
		ArgsUsage: "HOST|SERIAL",
		Description: "HOST: the agent's registered certificate serial goes to state_dir/revoked-serials; the\n" +
			"dispatcher refuses that agent in the TLS handshake, before sending anything, until it is\n" +
			"paired again (its record stays; unpair removes it).\n" +
			"SERIAL (hex, 0x…, colon-separated or openssl's forms): a registered agent's serial is that\n" +
			"agent; any other is taken for a dispatcher certificate (another node's, or the one\n" +
			"rotate-cert replaced) and goes to state_dir/revoked-dispatcher-serials, which is pushed to\n" +
			"every agent at its next contact: agents refuse that certificate from then on. A name that\n" +
			"is registered wins over a serial spelled the same; write serials with 0x or colons to be sure.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "reason", Usage: "why, for the revocation list and the log", DefaultText: control.DefaultRevokeReason},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return cmdutil.Usagef("revoke needs one host name or serial: dispatcher revoke HOST|SERIAL")
			}
			e, st, err := loadStore(c)
			if err != nil {
				return err
			}
			defer e.close()
			r, err := control.Revoke(control.RevokeOptions{Registry: st, Revocations: st, Dispatcher: st, OwnCert: e.cfg.Cert, Log: e.log},
				c.Args().First(), c.String("reason"))
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return writeJSON(c, map[string]any{"ok": true, "kind": r.Kind, "host": r.Host, "serials": r.Serials, "reason": r.Reason})
			}
			out := c.App.Writer
			if r.Kind == control.RevokedAgent {
				_, err = fmt.Fprintf(out, "revoked %s: certificate serial %s; the dispatcher refuses it from now on (pair %s again to use it)\n",
					r.Host, r.Serials[0], r.Host)
				return err
			}
			for _, s := range r.Serials {
				fmt.Fprintf(out, "revoked dispatcher certificate serial %s\n", s)
			}
			_, err = fmt.Fprintln(out, "agents refuse it after their next contact with this dispatcher (run, ping, discover, renew or the API's sweep)")
			return err
		},
	}
}

func serialStatusCommand() *cli.Command {
	return &cli.Command{
		Name:  "serial-status",
		Usage: "show which agents know the current dispatcher certificate serial (after rotate-cert)",
		Description: "current: the agent has the serial (or was never asked to change); pending: rotate-cert\n" +
			"marked it, the serial is pushed at its next contact; stale: still pending after\n" +
			"cert_overlap_days. Only agents pinned by serial (Perl agents) need it: Go agents accept\n" +
			"any dispatcher certificate of the CA with the dispatcher role.",
		Action: func(c *cli.Context) error {
			e, st, err := loadStore(c)
			if err != nil {
				return err
			}
			defer e.close()
			r, err := control.SerialStatus(st, st, e.cfg.Cert, time.Now(), e.log)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return writeJSON(c, r)
			}
			return writeSerialStatus(c.App.Writer, r)
		},
	}
}

func writeSerialStatus(w io.Writer, r *control.SerialReport) error {
	fmt.Fprintf(w, "dispatcher certificate serial %s\n", orDash(r.CurrentSerial))
	if r.RotatedAt != "" {
		fmt.Fprintf(w, "rotated %s from serial %s; overlap until %s\n", r.RotatedAt, orDash(r.PreviousSerial), r.OverlapExpires)
	}
	if len(r.Agents) == 0 {
		_, err := fmt.Fprintln(w, "no agents registered")
		return err
	}
	t := output.NewTable("HOSTNAME", "STATUS", "DISPATCHER SERIAL", "CONFIRMED", "LAST CONTACT")
	for _, a := range r.Agents {
		t.Row(a.Hostname, a.Status, a.DispatcherSerial, a.Confirmed, a.LastContact)
	}
	return t.Write(w)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
