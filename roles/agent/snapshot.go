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
}

// paths says where a snapshot is loaded from.
type paths struct {
	config, allowlist       string
	configSet, allowlistSet bool // named on the command line: a missing file is an error
}

// loadSnapshot reads agent.conf, scripts.conf, the certificate, the CA, the
// revoked serials and the dispatcher-serial pin.
func loadSnapshot(p paths, log *zap.Logger) (*snapshot, error) {
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
	s := &snapshot{cfg: cfg}

	scripts, warns, err := config.LoadScripts(p.allowlist, log)
	if errors.Is(err, fs.ErrNotExist) && !p.allowlistSet {
		logging.EventLevel(log, zapcore.WarnLevel, logging.ActionConfigWarn, zap.String("file", p.allowlist),
			zap.String("reason", "no allowlist: no script can run until it exists"))
		err = nil
	}
	if err != nil {
		return nil, err
	}
	_ = warns // already logged by the loader
	entries := make([]exec.Entry, 0, len(scripts))
	for _, sc := range scripts {
		entries = append(entries, exec.Entry{Name: sc.Name, Path: sc.Path, Timeout: sc.Timeout, User: sc.User, Group: sc.Group, Env: sc.Env})
	}
	allow, skipped := exec.NewAllowlist(entries, cfg.ScriptDirs)
	for _, w := range skipped {
		logging.EventLevel(log, zapcore.WarnLevel, logging.ActionConfigWarn, zap.String("file", p.allowlist),
			zap.String("key", w.Name), zap.String("reason", w.Reason))
	}
	s.allow = allow

	cert, err := tls.LoadX509KeyPair(cfg.Cert, cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("load agent certificate %s: %w (pair this agent first: dispatcher-agent request-pairing --dispatcher HOST)", cfg.Cert, err)
	}
	s.cert = &cert

	caPEM, err := os.ReadFile(cfg.CA)
	if err != nil {
		return nil, fmt.Errorf("load ca %s: %w (pair this agent first: dispatcher-agent request-pairing --dispatcher HOST)", cfg.CA, err)
	}
	cas, err := pki.ParseCertsPEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("load ca %s: %w", cfg.CA, err)
	}
	s.roots = x509.NewCertPool()
	for _, c := range cas {
		s.roots.AddCert(c)
	}

	if data, err := os.ReadFile(cfg.RevokedSerials); err == nil {
		set, errs := pki.ParseSerialList(data)
		for _, e := range errs {
			logging.EventLevel(log, zapcore.WarnLevel, logging.ActionConfigWarn, zap.String("file", cfg.RevokedSerials), zap.Error(e))
		}
		s.revoked = set
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read revoked serials: %w", err)
	}

	if data, err := os.ReadFile(cfg.DispatcherSerialPath); err == nil {
		pin, ok := new(big.Int).SetString(strings.TrimSpace(strings.ToLower(string(data))), 16)
		if !ok {
			return nil, fmt.Errorf("%s: not a hex serial number: write the dispatcher certificate's serial in lowercase hex, or remove the file", cfg.DispatcherSerialPath)
		}
		s.pin = pin
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read dispatcher serial pin: %w", err)
	}
	return s, nil
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
