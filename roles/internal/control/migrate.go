package control

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// Levels of a migrate check finding.
const (
	LevelOK    = "ok"    // as it should be
	LevelInfo  = "info"  // worth knowing, nothing to do
	LevelWarn  = "warn"  // works, but look at it
	LevelBlock = "block" // fix it before this dispatcher takes over
)

// Sections of a migrate check report, in the order they are reported.
const (
	SectionConfig     = "config"
	SectionCA         = "ca"
	SectionIdentity   = "dispatcher certificate"
	SectionRegistry   = "registry"
	SectionRotation   = "rotation"
	SectionPairing    = "pairing"
	SectionLocks      = "locks"
	SectionRevocation = "revocations"
)

// MigrateConfig is what the caller found of dispatcher.conf: migrate check
// never sees the file's syntax, only the loader's verdict.
type MigrateConfig struct {
	Path     string
	Missing  bool // no file: the defaults apply
	Legacy   bool // the Perl dispatcher's key = value format
	Warnings []MigrateConfigWarning
	Err      error // the file did not load: the defaults were used for the paths
}

// MigrateConfigWarning is one warning of the configuration loader (the
// legacy-format warning left out: Legacy says it).
type MigrateConfigWarning struct {
	Line   int    `json:"line,omitempty"`
	Key    string `json:"key,omitempty"`
	Reason string `json:"reason"`
}

// MigrateCheckOptions is what migrate check looks at: plain values from
// dispatcher.conf.
type MigrateCheckOptions struct {
	Config   MigrateConfig
	CA       Pair // ca, ca_key
	Identity Pair // cert, key: the dispatcher's own
	StateDir string
	Postgres bool // store is a postgres:// URL
	CertDays int  // cert_days; ≤ 0 means 365
	Now      time.Time
}

// MigrateFinding is one line of the report.
type MigrateFinding struct {
	Level string `json:"level"`
	Host  string `json:"host,omitempty"`
	Text  string `json:"text"`
}

// MigrateSection is a group of findings about one part of the installation.
type MigrateSection struct {
	Name     string           `json:"name"`
	Findings []MigrateFinding `json:"findings"`
}

// MigrateAgent is what a registry record says about one agent.
type MigrateAgent struct {
	Hostname         string `json:"hostname"`
	PairedBy         string `json:"paired_by"` // "perl" (no key_fingerprint) or "dispatcher"
	Serial           string `json:"serial,omitempty"`
	KeyPinned        bool   `json:"key_pinned"`
	Expiry           string `json:"expiry,omitempty"`
	ExpiresInDays    *int   `json:"expires_in_days,omitempty"`
	RenewalDue       bool   `json:"renewal_due"`
	Renewal          string `json:"renewal"` // "unknown", "unsupported" or "renewed"
	SerialStatus     string `json:"serial_status,omitempty"`
	DispatcherSerial string `json:"dispatcher_serial,omitempty"`
	SerialConfirmed  string `json:"serial_confirmed,omitempty"`
}

// MigrateReport is the outcome of migrate check. OK is false when some
// finding has LevelBlock.
type MigrateReport struct {
	OK         bool             `json:"ok"`
	Blockers   int              `json:"blockers"`
	Config     string           `json:"config"`
	StateDir   string           `json:"state_dir"`
	Sections   []MigrateSection `json:"sections"`
	Agents     []MigrateAgent   `json:"agents"`
	WillHappen []string         `json:"will_happen"`
}

// Values of MigrateAgent.Renewal.
const (
	RenewalUnknown     = "unknown"
	RenewalNoSupport   = "unsupported"
	RenewalRenewed     = "renewed"
	pairedByPerl       = "perl"
	pairedByDispatcher = "dispatcher"
)

// migrate collects the report while the checks run.
type migrate struct {
	o        MigrateCheckOptions
	st       *store.Files
	report   *MigrateReport
	cur      *MigrateSection
	ownCert  *x509.Certificate
	caCert   *x509.Certificate
	agents   int
	rotation *store.Rotation
}

func (m *migrate) section(name string) {
	m.report.Sections = append(m.report.Sections, MigrateSection{Name: name, Findings: []MigrateFinding{}})
	m.cur = &m.report.Sections[len(m.report.Sections)-1]
}

func (m *migrate) add(level, host, format string, args ...any) {
	m.cur.Findings = append(m.cur.Findings, MigrateFinding{Level: level, Host: host, Text: fmt.Sprintf(format, args...)})
	if level == LevelBlock {
		m.report.Blockers++
	}
}

func (m *migrate) will(format string, args ...any) {
	m.report.WillHappen = append(m.report.WillHappen, fmt.Sprintf(format, args...))
}

// MigrateCheck reports what it finds of a Perl dispatcher installation (or
// of ours) at the paths of o, and what happens when this dispatcher takes
// over. It changes nothing: files are only read (lock files are probed
// with a shared flock that is let go at once) and nothing is logged. Every
// problem is a finding, never an error.
func MigrateCheck(o MigrateCheckOptions) *MigrateReport {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.CertDays <= 0 {
		o.CertDays = defaultCertDays
	}
	m := &migrate{o: o, st: store.NewFiles(o.StateDir), report: &MigrateReport{
		Config: o.Config.Path, StateDir: o.StateDir, Agents: []MigrateAgent{}, WillHappen: []string{},
	}}
	names, namesErr := m.st.AgentNames()
	m.agents = len(names)
	if r, err := m.st.GetRotation(); err == nil {
		m.rotation = &r
	}
	m.checkConfig()
	m.checkCA()
	m.checkIdentity()
	m.checkRegistry(names, namesErr)
	m.checkRotation()
	m.checkPairing()
	m.checkLocks()
	m.checkRevocations()
	m.summarise()
	m.report.OK = m.report.Blockers == 0
	return m.report
}

func (m *migrate) checkConfig() {
	m.section(SectionConfig)
	c := m.o.Config
	switch {
	case c.Err != nil:
		m.add(LevelBlock, "", "%v: this dispatcher refuses to start with it; fix it (docs/CONFIG.md). The paths below are the defaults", c.Err)
	case c.Missing:
		m.add(LevelInfo, "", "%s does not exist: the defaults apply (docs/CONFIG.md)", c.Path)
	case c.Legacy:
		m.add(LevelOK, "", "%s: the Perl dispatcher's key = value format; read as it is, with one config-warn line per command suggesting TOML (optional)", c.Path)
	default:
		m.add(LevelOK, "", "%s: TOML", c.Path)
	}
	for _, w := range c.Warnings {
		where := c.Path
		if w.Line > 0 {
			where = fmt.Sprintf("%s:%d", c.Path, w.Line)
		}
		key := ""
		if w.Key != "" {
			key = fmt.Sprintf(" key %q:", w.Key)
		}
		what := w.Reason
		if w.Reason == "unknown key" {
			what = "unknown key, ignored"
		}
		m.add(LevelWarn, "", "%s:%s %s", where, key, what)
	}
	if m.o.Postgres {
		m.add(LevelInfo, "", "store is a postgres:// URL: this dispatcher keeps its state in PostgreSQL, not in state_dir; dispatcher store import copies state_dir there (docs/HIGH-AVAILABILITY.md). The state below is state_dir's")
	}
}

// installed reports whether anything says a dispatcher ran here: agents
// registered, or a CA or dispatcher certificate present.
func (m *migrate) installed() bool {
	return m.agents > 0 || exists(m.o.CA.Cert) || exists(m.o.Identity.Cert)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// missing is the level of a missing file that only matters once something
// is installed.
func (m *migrate) missing() string {
	if m.installed() {
		return LevelBlock
	}
	return LevelInfo
}

func (m *migrate) checkCA() {
	m.section(SectionCA)
	data, err := os.ReadFile(m.o.CA.Cert)
	if errors.Is(err, fs.ErrNotExist) {
		if m.installed() {
			m.add(LevelBlock, "", "no CA certificate at %s: agents cannot be verified nor paired; point ca in dispatcher.conf at the Perl dispatcher's ca.crt", m.o.CA.Cert)
		} else {
			m.add(LevelInfo, "", "no CA certificate at %s: nothing to take over here; dispatcher setup-ca makes one", m.o.CA.Cert)
		}
		return
	}
	if err != nil {
		m.add(LevelBlock, "", "read CA certificate: %v", err)
		return
	}
	cert, err := pki.ParseCertPEM(data)
	if err != nil {
		m.add(LevelBlock, "", "CA certificate %s: %v", m.o.CA.Cert, err)
		return
	}
	m.caCert = cert
	m.add(m.expiryLevel(cert.NotAfter, LevelOK), "", "%s: CA %q, %s, %s, serial %s, expires %s",
		m.o.CA.Cert, cert.Subject.CommonName, keyDescription(cert.PublicKey), versionDescription(cert), pki.FormatSerial(cert.SerialNumber), m.expiry(cert.NotAfter))
	ca, err := LoadCA(m.o.CA)
	if err != nil {
		hint := ""
		if errors.Is(err, fs.ErrPermission) {
			hint = "; run migrate check as the user the dispatcher runs as (sudo)"
		}
		m.add(LevelBlock, "", "CA key: %v: this dispatcher could not approve pairings nor renew certificates%s", err, hint)
		return
	}
	m.add(LevelOK, "", "%s belongs to the CA certificate: new agent certificates are signed by this CA (%s), for the agent's own key (ECDSA P-256 for agents of this version)",
		m.o.CA.Key, keyDescription(ca.Cert.PublicKey))
}

// keyDescription names a public key's algorithm and size.
func keyDescription(pub any) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T key", pub)
}

func versionDescription(c *x509.Certificate) string {
	if c.Version < 3 {
		return fmt.Sprintf("X.509 v%d (no extensions)", c.Version)
	}
	return "X.509 v3"
}

// expiry writes a certificate's end the OpenSSL way, with the days left.
func (m *migrate) expiry(t time.Time) string {
	days := DaysLeft(t, m.o.Now)
	if days < 0 {
		return fmt.Sprintf("%s (EXPIRED)", pki.FormatOpenSSLTime(t))
	}
	return fmt.Sprintf("%s (%d days)", pki.FormatOpenSSLTime(t), days)
}

// expiryLevel is level, or block when t has passed, or warn within
// ExpiryWarnDays.
func (m *migrate) expiryLevel(t time.Time, level string) string {
	switch {
	case !m.o.Now.Before(t):
		return LevelBlock
	case DaysLeft(t, m.o.Now) < ExpiryWarnDays:
		return LevelWarn
	}
	return level
}

func (m *migrate) checkIdentity() {
	m.section(SectionIdentity)
	if !exists(m.o.Identity.Cert) {
		m.add(m.missing(), "", "no dispatcher certificate at %s: agents cannot be contacted; point cert and key in dispatcher.conf at the Perl dispatcher's, or run dispatcher setup-dispatcher", m.o.Identity.Cert)
		return
	}
	id, err := LoadIdentity(m.o.Identity.Cert, m.o.Identity.Key, m.o.CA.Cert)
	if err != nil {
		m.add(LevelBlock, "", "%v: agents cannot be contacted", err)
		return
	}
	leaf := id.Cert.Leaf
	m.ownCert = leaf
	serial := pki.FormatSerial(leaf.SerialNumber)
	m.add(m.expiryLevel(leaf.NotAfter, LevelOK), "", "%s: %q, %s, serial %s, expires %s", m.o.Identity.Cert, leaf.Subject.CommonName, keyDescription(leaf.PublicKey), serial, m.expiry(leaf.NotAfter))
	legacy, err := pki.VerifyDispatcher([]*x509.Certificate{leaf}, id.Roots, m.o.Now)
	if err != nil {
		m.add(LevelBlock, "", "agents refuse this certificate: %v", err)
		return
	}
	if legacy {
		m.add(LevelOK, "", "legacy certificate (no role SAN, made by the Perl dispatcher): agents pinned to serial %s by their dispatcher-serial file (Perl agents, and agents of this version that keep that file) accept it; an agent without that pin answers 403 serial mismatch", serial)
		return
	}
	m.add(LevelOK, "", "certificate of this version (role urn:dispatcher:dispatcher): agents of this version accept it by its role; a Perl agent only when its dispatcher-serial is %s", serial)
}

// ownSerial is the serial of the dispatcher certificate, "" when unknown.
func (m *migrate) ownSerial() string {
	if m.ownCert == nil {
		return ""
	}
	return pki.FormatSerial(m.ownCert.SerialNumber)
}

func (m *migrate) checkRegistry(names []string, err error) {
	m.section(SectionRegistry)
	if fi, serr := os.Stat(m.o.StateDir); errors.Is(serr, fs.ErrNotExist) {
		m.add(LevelInfo, "", "state_dir %s does not exist: no state to take over; it is created at the first write", m.o.StateDir)
		return
	} else if serr == nil && !fi.IsDir() {
		m.add(LevelBlock, "", "state_dir %s is not a directory", m.o.StateDir)
		return
	}
	if err != nil {
		m.add(LevelBlock, "", "%v", err)
		return
	}
	var perl, ours, unreadable int
	var agents []MigrateAgent
	var lines []MigrateFinding
	for _, n := range names {
		a, err := m.st.GetAgent(n)
		if err != nil {
			unreadable++
			lines = append(lines, MigrateFinding{Level: LevelBlock, Host: n, Text: fmt.Sprintf("%v: list-agents and every command that lists the registry fail on it; fix or remove the record", err)})
			continue
		}
		ma, found := m.describeAgent(a)
		if ma.PairedBy == pairedByPerl {
			perl++
		} else {
			ours++
		}
		agents = append(agents, ma)
		lines = append(lines, found...)
	}
	if len(names) == 0 {
		m.add(LevelOK, "", "no agents registered (%s)", filepath.Join(m.o.StateDir, "agents"))
	} else {
		m.add(LevelOK, "", "%d records in %s: %d paired by the Perl dispatcher (no key_fingerprint), %d by this version, %d unreadable",
			len(names), filepath.Join(m.o.StateDir, "agents"), perl, ours, unreadable)
	}
	for _, f := range lines {
		m.cur.Findings = append(m.cur.Findings, f)
		if f.Level == LevelBlock {
			m.report.Blockers++
		}
	}
	if agents != nil {
		m.report.Agents = agents
	}
}

// legacyFirstUse is what happens to an agent paired by the Perl dispatcher
// (a record without key_fingerprint) at its first contact (Engine.verifyPeer,
// pinFirstUse): its legacy certificate is accepted on chain and name, and
// its key is pinned in the record.
const legacyFirstUse = "its legacy certificate (CN only, no role) is accepted at the first successful contact on chain to the CA and CN = host name, and its key is then pinned in the record (key_fingerprint, ACTION=key-pin); after that only that key"

// describeAgent reads what a record says of its agent and the findings
// about it, one line each.
func (m *migrate) describeAgent(a store.Agent) (MigrateAgent, []MigrateFinding) {
	host := a.Hostname
	ma := MigrateAgent{Hostname: host, Serial: a.Serial, KeyPinned: a.KeyFingerprint != "", Expiry: a.Expiry, Renewal: RenewalUnknown,
		SerialStatus: a.ExtraString(store.FieldSerialStatus), DispatcherSerial: a.ExtraString(store.FieldDispatcherSerial),
		SerialConfirmed: a.ExtraString(store.FieldSerialConfirmed)}
	var out []MigrateFinding
	add := func(level, format string, args ...any) {
		out = append(out, MigrateFinding{Level: level, Host: host, Text: host + ": " + fmt.Sprintf(format, args...)})
	}

	// Identity.
	if ma.KeyPinned {
		ma.PairedBy = pairedByDispatcher
		if _, err := pki.ParseFingerprint(a.KeyFingerprint); err != nil {
			add(LevelBlock, "key_fingerprint: %v: contacts fail until the record is fixed or the agent paired again", err)
		} else {
			add(LevelOK, "paired by this version: serial %s, key pinned", orNone(a.Serial))
		}
	} else {
		ma.PairedBy = pairedByPerl
		add(LevelInfo, "paired by the Perl dispatcher (no key_fingerprint recorded): %s", legacyFirstUse)
	}

	// Expiry and renewal.
	var parts []string
	level := LevelOK
	exp, err := pki.ParseOpenSSLTime(a.Expiry)
	switch {
	case a.Expiry == "":
		level = LevelWarn
		parts = append(parts, "no expiry recorded")
	case err != nil:
		level = LevelWarn
		parts = append(parts, fmt.Sprintf("expiry %q unreadable", a.Expiry))
	default:
		days := DaysLeft(exp, m.o.Now)
		ma.ExpiresInDays = &days
		switch {
		case !m.o.Now.Before(exp):
			level = LevelWarn
			parts = append(parts, fmt.Sprintf("certificate EXPIRED on %s: pair the agent again", a.Expiry))
		case days < ExpiryWarnDays:
			level = LevelWarn
			parts = append(parts, fmt.Sprintf("certificate expires %s: in %d days", a.Expiry, days))
		default:
			parts = append(parts, fmt.Sprintf("certificate expires %s (%d days)", a.Expiry, days))
		}
		if m.o.Now.Before(exp) && exp.Sub(m.o.Now) < time.Duration(m.o.CertDays)*24*time.Hour/2 {
			ma.RenewalDue = true
			parts = append(parts, fmt.Sprintf("renewal due (under half of cert_days = %d left): asked at its next contact", m.o.CertDays))
		}
	}
	if t := a.ExtraTime(store.FieldRenewalUnsupported); !t.IsZero() {
		ma.Renewal = RenewalNoSupport
		parts = append(parts, fmt.Sprintf("answered 404 to /renew on %s (a Perl agent): %s, asked again a day later", stamp(t), RenewalUnsupported))
	} else if t := a.ExtraTime(store.FieldLastRenewal); !t.IsZero() {
		ma.Renewal = RenewalRenewed
		parts = append(parts, fmt.Sprintf("renewed by this version on %s", stamp(t)))
	} else {
		parts = append(parts, "renewal support unknown (a Perl agent answers 404 to /renew, recorded once)")
	}
	add(level, "%s", strings.Join(parts, "; "))

	// Serial pin.
	if ma.SerialStatus != "" || ma.DispatcherSerial != "" {
		level, text := m.describePin(ma)
		add(level, "%s", text)
	}
	return ma, out
}

// describePin says what the Perl rotation fields of a record mean now.
func (m *migrate) describePin(a MigrateAgent) (string, string) {
	st := a.SerialStatus
	if st == "" {
		st = store.SerialCurrent
	}
	text := "serial_status " + st
	if a.DispatcherSerial != "" {
		text += ", dispatcher_serial " + a.DispatcherSerial
	}
	if a.SerialConfirmed != "" {
		text += ", confirmed " + a.SerialConfirmed
	}
	own := m.ownSerial()
	switch st {
	case store.SerialPending, store.SerialStale:
		level := LevelInfo
		if st == store.SerialStale {
			level = LevelWarn
		}
		if m.rotation != nil && own != "" && m.rotation.CurrentSerial == own {
			return level, text + fmt.Sprintf(": told serial %s at its next contact (POST /dispatcher-serial, or the update-dispatcher-serial script on a Perl agent)", own)
		}
		return LevelWarn, text + ": this dispatcher's certificate is not the one rotation.json names, so it pushes no serial to the agent"
	case store.SerialCurrent:
		if a.DispatcherSerial != "" && own != "" {
			if n, err := parseRecordSerial(a.DispatcherSerial); err == nil && pki.FormatSerial(n) != own {
				return LevelWarn, text + fmt.Sprintf(": not this dispatcher certificate's serial %s; an agent still pinned by serial refuses it (403 serial mismatch)", own)
			}
		}
		return LevelOK, text
	}
	return LevelWarn, text + ": unknown serial_status; serial-status shows it as it is"
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func (m *migrate) checkRotation() {
	m.section(SectionRotation)
	r, err := m.st.GetRotation()
	switch {
	case errors.Is(err, store.ErrNotFound):
		m.add(LevelOK, "", "no rotation.json: the dispatcher certificate was never rotated")
		return
	case err != nil:
		m.add(LevelBlock, "", "%v: serial-status fails on it; fix or remove it", err)
		return
	}
	m.add(LevelInfo, "", "rotation.json: current_serial %s, previous_serial %s, rotated_at %s, overlap_expires %s",
		orNone(r.CurrentSerial), orNone(r.PreviousSerial), orNone(stamp(r.RotatedAt)), orNone(stamp(r.OverlapExpires)))
	if own := m.ownSerial(); own != "" && r.CurrentSerial != own {
		m.add(LevelWarn, "", "current_serial %s is not the serial of %s (%s): this dispatcher pushes no serial to pending agents", r.CurrentSerial, m.o.Identity.Cert, own)
	}
	if !r.OverlapExpires.IsZero() && m.o.Now.After(r.OverlapExpires) {
		m.add(LevelInfo, "", "the overlap window is over: serial-status marks agents still pending stale (and writes that to their records)")
	}
}

func (m *migrate) checkPairing() {
	m.section(SectionPairing)
	dir := filepath.Join(m.o.StateDir, "pairing")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		m.add(LevelOK, "", "no pairing requests")
		return
	}
	if err != nil {
		m.add(LevelWarn, "", "read pairing queue %s: %v: list-requests and approve fail", dir, err)
		return
	}
	var pending, decided int
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !e.Type().IsRegular() || store.ValidReqID(id) != nil {
			continue
		}
		r, err := m.st.GetPairRequest(id)
		if err != nil {
			m.add(LevelWarn, "", "%v: skipped (list-requests does not show it)", err)
			continue
		}
		if !r.Pending(m.o.Now) {
			decided++
			continue
		}
		pending++
		m.add(LevelInfo, r.Hostname, "pending request %s for %s from %s, expires %s: dispatcher list-requests shows it; approve or deny it",
			r.ReqID, r.Hostname, orNone(r.IP), stamp(r.Expires))
	}
	if pending == 0 {
		m.add(LevelOK, "", "no pairing requests pending (%d decided or expired)", decided)
	}
}

func (m *migrate) checkLocks() {
	m.section(SectionLocks)
	dir := filepath.Join(m.o.StateDir, "locks")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		m.add(LevelOK, "", "no lock files")
		return
	}
	if err != nil {
		m.add(LevelBlock, "", "read lock directory %s: %v", dir, err)
		return
	}
	files := 0
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".lock") && !strings.HasPrefix(e.Name(), ".") {
			files++
		}
	}
	held, err := m.st.ListLocks()
	if err != nil {
		m.add(LevelBlock, "", "%v", err)
		return
	}
	if len(held) == 0 {
		m.add(LevelOK, "", "%d lock files in %s, none held", files, dir)
		return
	}
	m.add(LevelInfo, "", "%d lock files in %s, %d held", files, dir, len(held))
	for _, l := range held {
		by := "by the Perl dispatcher (no holder details)"
		if l.PID != 0 {
			by = fmt.Sprintf("by pid %d (%s, reqid %s)", l.PID, orNone(l.User), orNone(l.ReqID))
		}
		m.add(LevelBlock, l.Host, "%s held %s: a run is in progress; switch when it has ended (dispatcher list-locks)", l.LockKey.String(), by)
	}
}

func (m *migrate) checkRevocations() {
	m.section(SectionRevocation)
	path := filepath.Join(m.o.StateDir, "revoked-serials")
	set, warnings, err := m.st.RevokedSerials()
	if err != nil {
		m.add(LevelBlock, "", "%v: run, ping and discover refuse to start without it; fix or remove the file", err)
		return
	}
	entries, err := m.st.ListRevocations()
	if err != nil {
		m.add(LevelBlock, "", "%v", err)
		return
	}
	if len(entries) == 0 {
		m.add(LevelOK, "", "no revoked serials")
	} else {
		m.add(LevelOK, "", "%s: %d entries, %d serials refused (an all-digit line revokes both its hex and its decimal reading)", path, len(entries), set.Len())
	}
	for _, w := range warnings {
		m.add(LevelWarn, "", "%v: skipped, so that serial is not revoked; fix the line", w)
	}
	if set, _, err := m.st.RevokedDispatcherSerials(); err == nil && set.Len() > 0 {
		m.add(LevelInfo, "", "revoked-dispatcher-serials: %d serials (written by this version; the Perl dispatcher ignores the file)", set.Len())
	}
}

// summarise writes what happens when this dispatcher takes over.
func (m *migrate) summarise() {
	if !m.installed() {
		m.will("nothing to take over: set up with dispatcher setup-ca and dispatcher setup-dispatcher, then pair agents")
		return
	}
	c := m.o.Config
	switch {
	case c.Err != nil:
	case c.Legacy:
		m.will("dispatcher.conf is read as it is; converting it to TOML is optional (docs/CONFIG.md#legacy-format)")
	case c.Missing:
		m.will("the defaults apply: write dispatcher.conf if the Perl dispatcher used other paths")
	}
	var perl, due, unknown, unsupported int
	for _, a := range m.report.Agents {
		if a.PairedBy == pairedByPerl {
			perl++
		}
		if a.RenewalDue {
			due++
		}
		switch a.Renewal {
		case RenewalUnknown:
			unknown++
		case RenewalNoSupport:
			unsupported++
		}
	}
	if perl > 0 {
		m.will("%d agents paired by the Perl dispatcher, without re-pairing: %s", perl, legacyFirstUse)
	}
	if m.caCert != nil {
		m.will("approve signs new agent certificates with the existing CA (%s) for cert_days = %d, with the agent's host name as DNS SAN and the agent role; the registry pins their key", keyDescription(m.caCert.PublicKey), m.o.CertDays)
	}
	if m.ownCert != nil && pki.CertRole(m.ownCert) == pki.RoleNone {
		m.will("the legacy dispatcher certificate is used as it is; dispatcher rotate-cert would replace it with one carrying the dispatcher role (Perl agents then learn the new serial through the update-dispatcher-serial script)")
	}
	m.will("after each successful run, ping or discover of a registered agent, its certificate is renewed when under half of cert_days is left (%d agents due now, %d of unknown renewal support); an agent answering 404 to /renew is recorded once in its record (renewal_unsupported, %d so far) and shown by list-agents",
		due, unknown, unsupported)
	m.will("registry records keep every Perl field; this version adds fields the Perl dispatcher ignores (key_fingerprint, serial, port, tags, last_contact, last_renewal, renewal_unsupported, revocations_pushed) and files under state_dir (contact/HOST, revoked-dispatcher-serials)")
	m.will("host:script locks stay state_dir/locks/HOST--SCRIPT.lock with flock: a Perl dispatcher and this one on the same host see each other's locks")
	if m.report.Blockers > 0 {
		m.will("%s a takeover: fix the lines marked BLOCK and run dispatcher migrate check again", BlockCount(m.report.Blockers))
	}
}

// BlockCount is "1 finding blocks" or "N findings block".
func BlockCount(n int) string {
	if n == 1 {
		return "1 finding blocks"
	}
	return fmt.Sprintf("%d findings block", n)
}
