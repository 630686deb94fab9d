package agent

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dispatcher-dev/dispatcher/exec"
	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/internal/config"
	"github.com/dispatcher-dev/dispatcher/roles/internal/logging"
)

// snapshot is everything a request needs, loaded together and never
// modified: a reload builds a new one.
type snapshot struct {
	cfg     *config.Agent
	allow   *exec.Allowlist
	cert    *tls.Certificate
	roots   *x509.CertPool
	revoked pki.SerialSet
	pin     *big.Int // legacy dispatcher-serial pin; nil when there is none
	ips     ipFilter // allowed_ips, parsed
}

// paths says where a snapshot is loaded from.
type paths struct {
	config, allowlist       string
	configSet, allowlistSet bool // named on the command line: a missing file is an error
}

// loadSnapshot reads agent.conf, scripts.conf, the certificate, the CA, the
// revoked serials and the dispatcher-serial pin.
func loadSnapshot(p paths, log *zap.Logger) (*snapshot, error) {
	cfg, err := loadConfig(p, log)
	if err != nil {
		return nil, err
	}
	s := &snapshot{cfg: cfg}
	ips, badIPs := parseAllowedIPs(cfg.AllowedIPs)
	for _, b := range badIPs {
		logging.EventLevel(log, zapcore.WarnLevel, logging.ActionConfigWarn, zap.String("file", p.config), zap.String("key", "allowed_ips"),
			zap.String("reason", fmt.Sprintf("%q is not an IP address or CIDR: skipped", b)))
	}
	if ips.restrict && len(ips.prefixes) == 0 {
		logging.EventLevel(log, zapcore.WarnLevel, logging.ActionConfigWarn, zap.String("file", p.config), zap.String("key", "allowed_ips"),
			zap.String("reason", "no valid entry: every connection is refused"))
	}
	s.ips = ips

	al, err := loadAllowlist(p, cfg, log)
	if err != nil {
		return nil, err
	}
	if al.missing {
		logging.EventLevel(log, zapcore.WarnLevel, logging.ActionConfigWarn, zap.String("file", p.allowlist),
			zap.String("reason", "no allowlist: no script can run until it exists"))
	}
	for _, w := range al.skipped {
		logging.EventLevel(log, zapcore.WarnLevel, logging.ActionConfigWarn, zap.String("file", p.allowlist),
			zap.String("key", w.Name), zap.String("reason", w.Reason))
	}
	s.allow = al.allow

	if s.cert, err = loadCert(cfg); err != nil {
		return nil, err
	}
	if _, s.roots, err = loadCA(cfg); err != nil {
		return nil, err
	}
	set, bad, err := loadRevoked(cfg)
	if err != nil {
		return nil, err
	}
	for _, e := range bad {
		logging.EventLevel(log, zapcore.WarnLevel, logging.ActionConfigWarn, zap.String("file", cfg.RevokedSerials), zap.Error(e))
	}
	s.revoked = set
	if s.pin, err = loadPin(cfg); err != nil {
		return nil, err
	}
	return s, nil
}

// loadConfig reads agent.conf. A missing file at the default path (not
// named with --config) means the defaults.
func loadConfig(p paths, log *zap.Logger) (*config.Agent, error) {
	cfg, err := config.LoadAgent(p.config, log, nil)
	if errors.Is(err, fs.ErrNotExist) && !p.configSet {
		cfg = config.DefaultAgent()
		err = cfg.Validate()
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("config file %s does not exist: create it or leave out --config to use the defaults", p.config)
		}
		return nil, err
	}
	return cfg, nil
}

// allowlistLoad is what loading scripts.conf gave.
type allowlistLoad struct {
	allow    *exec.Allowlist
	warnings []config.Warning // from reading scripts.conf (the loader has logged them)
	skipped  []exec.Warning   // entries and script_dirs exec refused
	missing  bool             // no scripts.conf at the default path: nothing may run
}

// loadAllowlist reads scripts.conf and checks its entries against
// script_dirs. A missing file at the default path is an empty allowlist.
func loadAllowlist(p paths, cfg *config.Agent, log *zap.Logger) (allowlistLoad, error) {
	var out allowlistLoad
	scripts, warns, err := config.LoadScripts(p.allowlist, log)
	if errors.Is(err, fs.ErrNotExist) && !p.allowlistSet {
		out.missing, err = true, nil
	}
	if err != nil {
		return out, err
	}
	out.warnings = warns
	entries := make([]exec.Entry, 0, len(scripts))
	for _, sc := range scripts {
		entries = append(entries, exec.Entry{Name: sc.Name, Path: sc.Path, Timeout: sc.Timeout, User: sc.User, Group: sc.Group, Env: sc.Env,
			MaxConcurrent: sc.MaxConcurrent})
	}
	out.allow, out.skipped = exec.NewAllowlist(entries, cfg.ScriptDirs)
	return out, nil
}

// pairHint is the advice given when the agent's certificate files are
// missing.
const pairHint = "pair this agent first: dispatcher-agent request-pairing --dispatcher HOST"

// loadCert reads the agent's certificate and key, which must match.
func loadCert(cfg *config.Agent) (*tls.Certificate, error) {
	cert, err := pki.LoadKeyPair(cfg.Cert, cfg.Key, pki.KeyModeGroup)
	var me *pki.KeyModeError
	if errors.As(err, &me) {
		return nil, fmt.Errorf("load agent certificate %s: %w", cfg.Cert, err)
	}
	if err != nil {
		return nil, fmt.Errorf("load agent certificate %s: %w (%s)", cfg.Cert, err, pairHint)
	}
	return &cert, nil
}

// loadCA reads the CA file: every certificate in it is trusted.
func loadCA(cfg *config.Agent) ([]*x509.Certificate, *x509.CertPool, error) {
	caPEM, err := os.ReadFile(cfg.CA)
	if err != nil {
		return nil, nil, fmt.Errorf("load ca %s: %w (%s)", cfg.CA, err, pairHint)
	}
	cas, err := pki.ParseCertsPEM(caPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("load ca %s: %w", cfg.CA, err)
	}
	roots := x509.NewCertPool()
	for _, c := range cas {
		roots.AddCert(c)
	}
	return cas, roots, nil
}

// loadRevoked reads revoked-serials; a missing file is an empty set. The
// lines that do not parse are returned, not fatal.
func loadRevoked(cfg *config.Agent) (pki.SerialSet, []error, error) {
	data, err := os.ReadFile(cfg.RevokedSerials)
	if errors.Is(err, fs.ErrNotExist) {
		return pki.SerialSet{}, nil, nil
	}
	if err != nil {
		return pki.SerialSet{}, nil, fmt.Errorf("read revoked serials: %w", err)
	}
	set, bad := pki.ParseSerialList(data)
	return set, bad, nil
}

// loadPin reads the legacy dispatcher-serial pin; nil when there is none.
func loadPin(cfg *config.Agent) (*big.Int, error) {
	data, err := os.ReadFile(cfg.DispatcherSerialPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read dispatcher serial pin: %w", err)
	}
	pin, ok := new(big.Int).SetString(strings.TrimSpace(strings.ToLower(string(data))), 16)
	if !ok {
		return nil, fmt.Errorf("%s: not a hex serial number: write the dispatcher certificate's serial in lowercase hex, or remove the file", cfg.DispatcherSerialPath)
	}
	return pin, nil
}

// leafExpiry is the agent certificate's notAfter.
func (s *snapshot) leafExpiry() time.Time {
	if s.cert.Leaf != nil {
		return s.cert.Leaf.NotAfter
	}
	return time.Time{}
}

// diff describes what changed from old to s, for the reload log line.
func (s *snapshot) diff(old *snapshot) []zap.Field {
	var added, removed []string
	oldNames := map[string]bool{}
	for _, e := range old.allow.Entries() {
		oldNames[e.Name] = true
	}
	for _, e := range s.allow.Entries() {
		if !oldNames[e.Name] {
			added = append(added, e.Name)
		}
		delete(oldNames, e.Name)
	}
	for n := range oldNames {
		removed = append(removed, n)
	}
	fields := []zap.Field{zap.Strings("scripts_added", added), zap.Strings("scripts_removed", removed),
		zap.Int("scripts", len(s.allow.Entries())), zap.Int("revoked", s.revoked.Len())}
	if !tagsEqual(old.cfg.Tags, s.cfg.Tags) {
		fields = append(fields, zap.Bool("tags_changed", true))
	}
	if s.cert.Leaf != nil && old.cert.Leaf != nil && !s.cert.Leaf.Equal(old.cert.Leaf) {
		fields = append(fields, zap.Bool("cert_changed", true))
	}
	return fields
}

func tagsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
