package dispatcher

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/internal/cmdutil"
	"github.com/dispatcher-dev/dispatcher/roles/internal/control"
	"github.com/dispatcher-dev/dispatcher/roles/internal/output"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

func listRequestsCommand() *cli.Command {
	return &cli.Command{
		Name:  "list-requests",
		Usage: "list the pairing requests waiting for approval",
		Description: "Shows each pending request with its request id, host name, source IP, the 6-digit\n" +
			"code (compare it with the one the agent shows), its age, the tags the agent sent (its\n" +
			"agent.conf [tags]; approving registers them), and ALREADY PAIRED when the host name is\n" +
			"registered (approving it then needs --replace).",
		Action: func(c *cli.Context) error {
			return withPairing(c, func(p *control.Pairing) error {
				reqs, err := p.ListRequests()
				if err != nil {
					return err
				}
				now := time.Now()
				if c.Bool("json") {
					return writeJSON(c, newRequestsJSON(reqs, now))
				}
				if len(reqs) == 0 {
					_, err := fmt.Fprintln(c.App.Writer, "no pairing requests pending")
					return err
				}
				return writeRequestsTable(c.App.Writer, reqs, now)
			})
		},
	}
}

func approveCommand() *cli.Command {
	return &cli.Command{
		Name:      "approve",
		Usage:     "approve a pairing request: sign the agent's certificate and register it",
		ArgsUsage: "REQID",
		Description: "Signs the agent's key for the requested host name (cert_days days) with the CA and\n" +
			"writes the registry record; the agent's waiting request-pairing then stores its\n" +
			"certificate. A host name that is registered already is refused unless --replace is\n" +
			"given: the new agent then replaces the registered one, whose certificate is revoked.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "replace", Usage: "re-pair a registered host name, revoking its current certificate"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return cmdutil.Usagef("approve needs one request id: dispatcher approve REQID (see dispatcher list-requests)")
			}
			return withPairing(c, func(p *control.Pairing) error {
				ap, err := p.Approve(c.Args().First(), c.Bool("replace"))
				if err != nil {
					return explainDecision(err, c.String("config"))
				}
				if c.Bool("json") {
					return writeJSON(c, approveJSON{OK: true, ReqID: ap.Request.ReqID, Hostname: ap.Agent.Hostname, IP: ap.Agent.IP,
						Port: ap.Agent.Port, Serial: ap.Agent.Serial, Expiry: ap.Agent.Expiry, Revoked: ap.Revoked})
				}
				out := c.App.Writer
				fmt.Fprintf(out, "approved %s (reqid %s): certificate serial %s, expires %s\n", ap.Agent.Hostname, ap.Request.ReqID, ap.Agent.Serial, ap.Agent.Expiry)
				if ap.Revoked != "" {
					fmt.Fprintf(out, "revoked the certificate it replaced (serial %s)\n", ap.Revoked)
				}
				return nil
			})
		},
	}
}

func denyCommand() *cli.Command {
	return &cli.Command{
		Name:      "deny",
		Usage:     "deny a pairing request",
		ArgsUsage: "REQID",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "reason", Usage: "reason the agent is told", DefaultText: control.DefaultDenyReason},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return cmdutil.Usagef("deny needs one request id: dispatcher deny REQID (see dispatcher list-requests)")
			}
			return withPairing(c, func(p *control.Pairing) error {
				r, err := p.Deny(c.Args().First(), c.String("reason"))
				if err != nil {
					return explainDecision(err, c.String("config"))
				}
				if c.Bool("json") {
					return writeJSON(c, map[string]any{"ok": true, "reqid": r.ReqID, "hostname": r.Hostname, "reason": r.Reason})
				}
				_, err = fmt.Fprintf(c.App.Writer, "denied %s (reqid %s): %s\n", r.Hostname, r.ReqID, r.Reason)
				return err
			})
		},
	}
}

func listAgentsCommand() *cli.Command {
	return &cli.Command{
		Name:  "list-agents",
		Usage: "list the paired agents (the registry), sorted by host name",
		Description: "--tag and --not-tag show only the agents a run with the same options would select\n" +
			"(tags as last published: 'dispatcher discover' refreshes them).",
		Flags: tagFlags(),
		Action: func(c *cli.Context) error {
			filter, err := selectionOf(c, nil)
			if err != nil {
				return err
			}
			if len(filter.NotTags) > 0 && len(filter.Tags) == 0 {
				filter.All = true // list-agents starts from every agent anyway
			}
			e, st, err := loadStore(c)
			if err != nil {
				return err
			}
			defer e.close()
			agents, err := control.ListAgents(st)
			if err != nil {
				return err
			}
			if filter.ByTags() {
				agents = slices.DeleteFunc(agents, func(a store.Agent) bool { return !filter.MatchesAgent(a) })
			}
			revoked, _, err := st.RevokedSerials()
			if err != nil {
				return err
			}
			certs := describeCerts(agents, revoked, time.Now())
			if c.Bool("json") {
				return writeJSON(c, newAgentsJSON(agents, certs))
			}
			if len(agents) == 0 && filter.ByTags() {
				_, err := fmt.Fprintf(c.App.Writer, "no registered agent matches %s\n", filter)
				return err
			}
			if len(agents) == 0 {
				_, err := fmt.Fprintln(c.App.Writer, "no agents registered (pair one: dispatcher pairing-mode)")
				return err
			}
			return writeAgentsTable(c.App.Writer, agents, certs)
		},
	}
}

func unpairCommand() *cli.Command {
	return &cli.Command{
		Name:      "unpair",
		Usage:     "remove an agent from the registry and revoke its certificate",
		ArgsUsage: "HOST",
		Description: "Removes agents/HOST.json and adds the agent certificate's serial to state_dir/revoked-serials:\n" +
			"the dispatcher refuses that certificate from then on, even if the agent is named again.",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return cmdutil.Usagef("unpair needs one host name: dispatcher unpair HOST")
			}
			return withPairing(c, func(p *control.Pairing) error {
				a, err := p.Unpair(c.Args().First())
				if err != nil {
					return err
				}
				if c.Bool("json") {
					return writeJSON(c, map[string]any{"ok": true, "hostname": a.Hostname, "revoked": a.Serial})
				}
				out := c.App.Writer
				if a.Serial == "" {
					_, err = fmt.Fprintf(out, "unpaired %s: record removed; it had no certificate serial recorded (paired by the Perl dispatcher), "+
						"so its certificate stays valid until %s unless the CA is replaced\n", a.Hostname, orUnknown(a.Expiry))
					return err
				}
				_, err = fmt.Fprintf(out, "unpaired %s: record removed, certificate serial %s revoked\n", a.Hostname, a.Serial)
				return err
			})
		},
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "it expires"
	}
	return s
}

// withPairing loads the configuration and calls f with the pairing
// operations over the configured store and CA.
func withPairing(c *cli.Context, f func(p *control.Pairing) error) error {
	e, st, err := loadStore(c)
	if err != nil {
		return err
	}
	defer e.close()
	p, err := control.NewPairing(control.PairingOptions{
		Queue: st, Registry: st, Revocations: st,
		CA:       control.Pair{Cert: e.cfg.CA, Key: e.cfg.CAKey},
		CertDays: e.cfg.CertDays,
		MaxQueue: e.cfg.PairingMaxQueue,
		Timeout:  e.cfg.PairingTimeout.Duration,
		Log:      e.log,
	})
	if err != nil {
		return err
	}
	return f(p)
}

// explainDecision adds what to do next to the refusals of approve and deny.
func explainDecision(err error, configPath string) error {
	var missing *control.MissingCAError
	switch {
	case errors.As(err, &missing):
		return fmt.Errorf("%w: approving signs with the CA key; run as a user that can read it (or fix ca and ca_key in %s)", err, configPath)
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("%w; see dispatcher list-requests", err)
	}
	return err
}

// requestJSON is one pending request in list-requests --json. The nonce
// and the CSR are not shown. Tags is {} when the agent sent none, as in
// list-agents --json.
type requestJSON struct {
	ReqID         string            `json:"reqid"`
	Hostname      string            `json:"hostname"`
	IP            string            `json:"ip"`
	Port          int               `json:"port"`
	Code          string            `json:"code"`
	Created       string            `json:"created"`
	Expires       string            `json:"expires"`
	AgeSeconds    int64             `json:"age_seconds"`
	Tags          map[string]string `json:"tags"`
	AlreadyPaired bool              `json:"already_paired"`
	PairedSerial  string            `json:"paired_serial,omitempty"`
}

func newRequestsJSON(reqs []control.PendingRequest, now time.Time) map[string]any {
	out := make([]requestJSON, len(reqs))
	for i, r := range reqs {
		tags := r.Tags
		if tags == nil {
			tags = map[string]string{}
		}
		out[i] = requestJSON{ReqID: r.ReqID, Hostname: r.Hostname, IP: r.IP, Port: r.Port, Code: r.Code,
			Created: r.Created.UTC().Format(time.RFC3339), Expires: r.Expires.UTC().Format(time.RFC3339),
			AgeSeconds: int64(max(now.Sub(r.Created), 0) / time.Second), Tags: tags,
			AlreadyPaired: r.AlreadyPaired, PairedSerial: r.PairedSerial}
	}
	return map[string]any{"ok": true, "requests": out}
}

// writeRequestsTable writes REQID HOSTNAME IP CODE AGE TAGS FLAG; TAGS as
// list-agents shows them (env=prod,role=web).
func writeRequestsTable(w io.Writer, reqs []control.PendingRequest, now time.Time) error {
	t := output.NewTable("REQID", "HOSTNAME", "IP", "CODE", "AGE", "TAGS", "FLAG")
	for _, r := range reqs {
		flag := ""
		if r.AlreadyPaired {
			flag = "ALREADY PAIRED"
		}
		t.Row(r.ReqID, r.Hostname, r.IP, r.Code, formatAge(now.Sub(r.Created)), output.FormatTags(r.Tags), flag)
	}
	return t.Write(w)
}

// formatAge writes a duration in whole seconds, minutes and hours: 45s,
// 3m05s, 2h10m.
func formatAge(d time.Duration) string {
	d = max(d, 0).Truncate(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

type approveJSON struct {
	OK       bool   `json:"ok"`
	ReqID    string `json:"reqid"`
	Hostname string `json:"hostname"`
	IP       string `json:"ip"`
	Port     int    `json:"port"`
	Serial   string `json:"serial"`
	Expiry   string `json:"cert_expiry"`
	Revoked  string `json:"revoked,omitempty"`
}

// agentJSON is one agent in list-agents --json (SPEC §6), plus port,
// last_contact and the certificate's lifecycle: days left, the expiry
// warning, revocation, last renewal and a note for the operator.
type agentJSON struct {
	Hostname      string            `json:"hostname"`
	IP            string            `json:"ip"`
	Port          int               `json:"port,omitempty"`
	PairedAt      string            `json:"paired_at"`
	CertExpiry    string            `json:"cert_expiry"`
	Serial        string            `json:"serial"`
	Tags          map[string]string `json:"tags"`
	LastContact   string            `json:"last_contact,omitempty"`
	ExpiresInDays *int              `json:"expires_in_days,omitempty"`
	ExpiryWarning bool              `json:"expiry_warning,omitempty"`
	Expired       bool              `json:"expired,omitempty"`
	Revoked       bool              `json:"revoked,omitempty"`
	LastRenewal   string            `json:"last_renewal,omitempty"`
	Note          string            `json:"note,omitempty"`
}

// describeCerts reads the certificate state of every record, by host name.
func describeCerts(agents []store.Agent, revoked pki.SerialSet, now time.Time) map[string]control.AgentCert {
	out := make(map[string]control.AgentCert, len(agents))
	for _, a := range agents {
		out[a.Hostname] = control.DescribeAgentCert(a, revoked, now)
	}
	return out
}

func newAgentsJSON(agents []store.Agent, certs map[string]control.AgentCert) []agentJSON {
	out := make([]agentJSON, len(agents))
	for i, a := range agents {
		tags := a.Tags
		if tags == nil {
			tags = map[string]string{}
		}
		cs := certs[a.Hostname]
		out[i] = agentJSON{Hostname: a.Hostname, IP: a.IP, Port: a.Port, PairedAt: a.Paired, CertExpiry: a.Expiry,
			Serial: a.Serial, Tags: tags, LastContact: formatContact(a.LastContact),
			ExpiresInDays: cs.ExpiresInDays, ExpiryWarning: cs.Warning, Expired: cs.Expired, Revoked: cs.Revoked,
			LastRenewal: formatContact(cs.LastRenewal), Note: cs.Note}
	}
	return out
}

// writeAgentsTable writes HOSTNAME IP PORT PAIRED EXPIRY SERIAL TAGS
// LAST CONTACT NOTE, sorted by host name. NOTE flags a certificate within
// control.ExpiryWarnDays of its expiry, an expired or revoked one, and an
// agent that cannot renew.
func writeAgentsTable(w io.Writer, agents []store.Agent, certs map[string]control.AgentCert) error {
	agents = append([]store.Agent(nil), agents...)
	sort.SliceStable(agents, func(i, j int) bool { return agents[i].Hostname < agents[j].Hostname })
	t := output.NewTable("HOSTNAME", "IP", "PORT", "PAIRED", "EXPIRY", "SERIAL", "TAGS", "LAST CONTACT", "NOTE")
	for _, a := range agents {
		port := ""
		if a.Port != 0 {
			port = strconv.Itoa(a.Port)
		}
		t.Row(a.Hostname, a.IP, port, a.Paired, a.Expiry, a.Serial, output.FormatTags(a.Tags), formatContact(a.LastContact), certs[a.Hostname].Note)
	}
	return t.Write(w)
}

func formatContact(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
