package agent

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/urfave/cli/v2"
	"go.uber.org/zap"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/internal/cmdutil"
	"github.com/dispatcher-dev/dispatcher/roles/internal/config"
	"github.com/dispatcher-dev/dispatcher/roles/internal/output"
)

func pairingStatusCommand() *cli.Command {
	return &cli.Command{
		Name:  "pairing-status",
		Usage: "say whether this agent is paired: exit 0 paired (prints the expiry), 1 not",
		Description: "Paired means: agent.crt and agent.key belong together, the certificate is an agent\n" +
			"certificate for hostname in agent.conf, signed by ca.crt, and valid now. Prints the host name,\n" +
			"the expiry (OpenSSL text and ISO 8601), the serial and the CA's fingerprint; when not paired,\n" +
			"why, any pairing request still waiting for an answer, and how to pair. No network.",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the status as one JSON object"}},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return cmdutil.Usagef("pairing-status takes no arguments")
			}
			cfg, err := loadConfig(pathsOf(c), zap.NewNop())
			if err != nil {
				return err
			}
			st := inspectPairing(cfg, time.Now())
			if c.Bool("json") {
				err = output.WriteJSON(c.App.Writer, st)
			} else {
				err = st.write(c.App.Writer)
			}
			if err != nil {
				return err
			}
			if !st.Paired {
				return cmdutil.Exit(cmdutil.ExitFailure, nil)
			}
			return nil
		},
	}
}

// pairingStatus is what pairing-status reports.
type pairingStatus struct {
	Paired        bool         `json:"paired"`
	Hostname      string       `json:"hostname,omitempty"` // the name in the certificate
	Cert          string       `json:"cert"`
	Expiry        string       `json:"expiry,omitempty"` // OpenSSL text, as /ping says it
	ExpiryISO     string       `json:"expiry_iso,omitempty"`
	Serial        string       `json:"serial,omitempty"`
	CAFingerprint string       `json:"ca_fingerprint,omitempty"` // sha256 of the issuing CA's public key
	CAName        string       `json:"ca_name,omitempty"`
	Reason        string       `json:"reason,omitempty"` // why not paired
	Pending       *pendingView `json:"pending,omitempty"`
}

// pendingView is a pairing request waiting for its answer.
type pendingView struct {
	ReqID      string `json:"reqid"`
	Dispatcher string `json:"dispatcher"`
	Code       string `json:"code"`
	Sent       string `json:"sent"`
	Deadline   string `json:"deadline"`
	Overdue    bool   `json:"overdue"` // the deadline has passed: nobody is waiting any more
}

// inspectPairing reads the agent's certificate files and any pending
// request. It never fails: what is wrong is the Reason.
func inspectPairing(cfg *config.Agent, now time.Time) *pairingStatus {
	st := &pairingStatus{Cert: cfg.Cert}
	if ps, _ := readState(pairFilesFor(cfg).state()); ps != nil {
		st.Pending = &pendingView{ReqID: ps.ReqID, Dispatcher: ps.Dispatcher, Code: ps.Code,
			Sent: ps.Sent.UTC().Format(time.RFC3339), Deadline: ps.Deadline.UTC().Format(time.RFC3339), Overdue: now.After(ps.Deadline)}
	}
	cert, err := loadCert(cfg)
	if err != nil {
		st.Reason = err.Error()
		if _, serr := os.Stat(cfg.Cert); errors.Is(serr, fs.ErrNotExist) {
			st.Reason = "no certificate at " + cfg.Cert
		}
		return st
	}
	leaf := cert.Leaf
	st.Hostname = certName(leaf)
	st.Expiry = pki.FormatOpenSSLTime(leaf.NotAfter)
	st.ExpiryISO = leaf.NotAfter.UTC().Format(time.RFC3339)
	st.Serial = pki.FormatSerial(leaf.SerialNumber)
	cas, roots, err := loadCA(cfg)
	if err != nil {
		st.Reason = err.Error()
		return st
	}
	if ca := issuerOf(leaf, cas); ca != nil {
		st.CAFingerprint, _ = pki.Fingerprint(ca.PublicKey)
		st.CAName = ca.Subject.CommonName
	}
	if err := verifyOwn(cert.Certificate, cert.PrivateKey, roots, cfg.Hostname, now); err != nil {
		st.Reason = err.Error()
		return st
	}
	st.Paired = true
	return st
}

// verifyOwn checks the agent's own certificate chain (DER, leaf first) as
// the dispatcher would: an agent certificate for hostname, signed by the
// CA, valid at now, for the agent's own key.
func verifyOwn(der [][]byte, key crypto.PrivateKey, roots *x509.CertPool, hostname string, now time.Time) error {
	chain := make([]*x509.Certificate, 0, len(der))
	for _, d := range der {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			return err
		}
		chain = append(chain, c)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return fmt.Errorf("unsupported private key %T", key)
	}
	return pki.VerifyAgent(chain, roots, hostname, signer.Public(), now)
}

// issuerOf returns the CA of cas that signed c, or nil.
func issuerOf(c *x509.Certificate, cas []*x509.Certificate) *x509.Certificate {
	for _, ca := range cas {
		if c.CheckSignatureFrom(ca) == nil {
			return ca
		}
	}
	return nil
}

func (st *pairingStatus) write(w io.Writer) error {
	var b []byte
	line := func(k, format string, args ...any) {
		b = fmt.Appendf(b, "%-10s%s\n", k+":", fmt.Sprintf(format, args...))
	}
	if st.Paired {
		line("paired", "yes")
	} else {
		line("paired", "no (%s)", st.Reason)
	}
	if st.Hostname != "" {
		line("hostname", "%s", st.Hostname)
		line("expires", "%s (%s)", st.Expiry, st.ExpiryISO)
		line("serial", "%s", st.Serial)
	}
	if st.CAFingerprint != "" {
		line("ca", "%s (%s)", st.CAFingerprint, st.CAName)
	}
	line("cert", "%s", st.Cert)
	if p := st.Pending; p != nil {
		state := "waiting until " + p.Deadline
		if p.Overdue {
			state = "no answer by " + p.Deadline + ", nobody waits for it any more"
		}
		line("pending", "request %s sent to %s at %s, code %s, %s", p.ReqID, p.Dispatcher, p.Sent, p.Code, state)
	}
	if !st.Paired && (st.Pending == nil || st.Pending.Overdue) {
		line("to pair", "dispatcher-agent request-pairing --dispatcher HOST (add --force to replace a certificate)")
	}
	_, err := w.Write(b)
	return err
}
