package config

import (
	"net/netip"
	"path/filepath"
	"strings"

	"go.uber.org/zap"
)

// Default dispatcher paths.
const (
	DefaultDispatcherConfig = "/etc/dispatcher/dispatcher.conf"
	DefaultDispatcherDir    = "/etc/dispatcher"
	DefaultStateDir         = "/var/lib/dispatcher"
)

// Dispatcher is dispatcher.conf, the configuration of the control host and
// of the api and pairing roles. Field comments give the key's default.
//
// Store may hold a database password: never log the struct.
type Dispatcher struct {
	Cert  string `toml:"cert"`   // /etc/dispatcher/dispatcher.crt
	Key   string `toml:"key"`    // /etc/dispatcher/dispatcher.key
	CA    string `toml:"ca"`     // /etc/dispatcher/ca.crt
	CAKey string `toml:"ca_key"` // ca.key in the directory of CA

	ReadTimeout    Duration `toml:"read_timeout"`    // 60s; "timeout" is an alias
	ConnectTimeout Duration `toml:"connect_timeout"` // 10s

	APIPort        int    `toml:"api_port"`         // 7445
	APIBind        string `toml:"api_bind"`         // 127.0.0.1; "" = all addresses
	APICert        string `toml:"api_cert"`         // ""; HTTPS when APICert and APIKey are set
	APIKey         string `toml:"api_key"`          // ""
	APIAuthDefault string `toml:"api_auth_default"` // "deny" or "allow", used when no AuthHook is set
	// APITrustedProxies are the raw IP and CIDR strings of reverse proxies
	// whose X-Forwarded-For the API believes; empty = the header is ignored.
	APITrustedProxies []string `toml:"api_trusted_proxies"`
	APIMaxRequests    int      `toml:"api_max_requests"` // 1024 requests in progress at once

	AuthHook    string   `toml:"auth_hook"`    // "" = no hook
	HookTimeout Duration `toml:"hook_timeout"` // 10s

	CertDays     int      `toml:"cert_days"`     // 365
	StateDir     string   `toml:"state_dir"`     // /var/lib/dispatcher
	Store        string   `toml:"store"`         // "" = files in StateDir, or a postgres:// URL
	MaxHosts     int      `toml:"max_hosts"`     // 10000
	Parallel     int      `toml:"parallel"`      // 256
	RunRetention Duration `toml:"run_retention"` // 24h
	// Resolve says how an agent's address is found: "dns" dials the name
	// when it resolves, else the registry's ip; "registry" dials the
	// registry's ip when there is one and looks names up only for hosts
	// without one.
	Resolve string `toml:"resolve"` // "dns"

	// Certificate lifecycle: after rotate-cert, agents not yet told the new
	// serial are pending for CertOverlapDays, then stale; the API sweeps
	// every agent for renewal each RenewInterval (0 = never).
	CertOverlapDays int      `toml:"cert_overlap_days"` // 7
	RenewInterval   Duration `toml:"renew_interval"`    // 6h

	PairingPort     int      `toml:"pairing_port"`      // 7444
	PairingMaxQueue int      `toml:"pairing_max_queue"` // 10
	PairingTimeout  Duration `toml:"pairing_timeout"`   // 600s

	Log       string `toml:"log"`        // "" = syslog if /dev/log exists, else stderr (see LogOutput)
	LogFormat string `toml:"log_format"` // "kv" or "json"

	// Warnings found while loading, also logged; nil for DefaultDispatcher.
	Warnings []Warning `toml:"-"`
}

// DefaultDispatcher returns the configuration used when dispatcher.conf is
// empty or absent.
func DefaultDispatcher() *Dispatcher {
	dir := DefaultDispatcherDir
	return &Dispatcher{
		Cert:            filepath.Join(dir, "dispatcher.crt"),
		Key:             filepath.Join(dir, "dispatcher.key"),
		CA:              filepath.Join(dir, "ca.crt"),
		CAKey:           filepath.Join(dir, "ca.key"),
		ReadTimeout:     seconds(60),
		ConnectTimeout:  seconds(10),
		APIPort:         7445,
		APIBind:         "127.0.0.1",
		APIAuthDefault:  "deny",
		APIMaxRequests:  1024,
		HookTimeout:     seconds(10),
		CertDays:        365,
		CertOverlapDays: 7,
		RenewInterval:   seconds(6 * 3600),
		StateDir:        DefaultStateDir,
		MaxHosts:        10000,
		Resolve:         ResolveDNS,
		Parallel:        256,
		RunRetention:    seconds(24 * 3600),
		PairingPort:     7444,
		PairingMaxQueue: 10,
		PairingTimeout:  seconds(600),
		LogFormat:       "kv",
	}
}

func (c *Dispatcher) setters() map[string]setter {
	return map[string]setter{
		"cert":             setString(&c.Cert),
		"key":              setString(&c.Key),
		"ca":               setString(&c.CA),
		"ca_key":           setString(&c.CAKey),
		"read_timeout":     setDuration(&c.ReadTimeout),
		"timeout":          setDuration(&c.ReadTimeout),
		"connect_timeout":  setDuration(&c.ConnectTimeout),
		"api_port":         setInt(&c.APIPort),
		"api_bind":         setString(&c.APIBind),
		"api_cert":         setString(&c.APICert),
		"api_key":          setString(&c.APIKey),
		"api_auth_default": setString(&c.APIAuthDefault),
		"api_trusted_proxies": func(v value) (err error) {
			c.APITrustedProxies, err = listValue(v, splitAddrs, true)
			return err
		},
		"api_max_requests":  setInt(&c.APIMaxRequests),
		"auth_hook":         setString(&c.AuthHook),
		"hook_timeout":      setDuration(&c.HookTimeout),
		"cert_days":         setInt(&c.CertDays),
		"cert_overlap_days": setInt(&c.CertOverlapDays),
		"renew_interval":    setDuration(&c.RenewInterval),
		"state_dir":         setString(&c.StateDir),
		"store":             setString(&c.Store),
		"max_hosts":         setInt(&c.MaxHosts),
		"parallel":          setInt(&c.Parallel),
		"resolve":           setString(&c.Resolve),
		"run_retention":     setDuration(&c.RunRetention),
		"pairing_port":      setInt(&c.PairingPort),
		"pairing_max_queue": setInt(&c.PairingMaxQueue),
		"pairing_timeout":   setDuration(&c.PairingTimeout),
		"log":               setString(&c.Log),
		"log_format":        setString(&c.LogFormat),
	}
}

// LoadDispatcher reads dispatcher.conf (TOML or legacy) over the defaults
// and validates it. Warnings are logged to log (nil: nowhere) and returned
// in Warnings. Errors are *Error naming file, line and key, except that a
// file that cannot be read is returned as the *fs.PathError (so
// errors.Is(err, fs.ErrNotExist) tells a missing file).
func LoadDispatcher(path string, log *zap.Logger) (*Dispatcher, error) {
	d, err := readDoc(path, log, lastWins)
	if err != nil {
		return nil, err
	}
	return d.dispatcher()
}

func (d *doc) dispatcher() (*Dispatcher, error) {
	c := DefaultDispatcher()
	if err := d.aliasConflict("timeout", "read_timeout"); err != nil {
		return nil, err
	}
	if err := d.apply(c.setters()); err != nil {
		return nil, err
	}
	if _, ok := d.tree["ca_key"]; !ok {
		c.CAKey = filepath.Join(filepath.Dir(c.CA), "ca.key")
	}
	c.Warnings = d.warnings
	if err := c.Validate(); err != nil {
		return nil, d.locate(err)
	}
	return c, nil
}

// Validate checks every value; it returns the first problem as an *Error
// with Key set.
func (c *Dispatcher) Validate() error {
	for _, err := range []error{
		checkSet("cert", c.Cert),
		checkSet("key", c.Key),
		checkSet("ca", c.CA),
		checkSet("ca_key", c.CAKey),
		checkPositive("read_timeout", c.ReadTimeout),
		checkPositive("connect_timeout", c.ConnectTimeout),
		checkPort("api_port", c.APIPort),
		checkBind("api_bind", c.APIBind),
		c.checkAPITLS(),
		c.checkAuthDefault(),
		c.checkTrustedProxies(),
		checkMin("api_max_requests", c.APIMaxRequests, 1),
		checkPositive("hook_timeout", c.HookTimeout),
		c.checkCertDays(),
		c.checkLifecycle(),
		checkSet("state_dir", c.StateDir),
		c.checkStore(),
		checkMin("max_hosts", c.MaxHosts, 1),
		checkMin("parallel", c.Parallel, 1),
		c.checkResolve(),
		checkPositive("run_retention", c.RunRetention),
		checkPort("pairing_port", c.PairingPort),
		checkMin("pairing_max_queue", c.PairingMaxQueue, 1),
		checkPositive("pairing_timeout", c.PairingTimeout),
		checkLog(c.Log, c.LogFormat),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *Dispatcher) checkAPITLS() error {
	switch {
	case c.APICert != "" && c.APIKey == "":
		return errorf("api_cert", "is set but api_key is not; set both for HTTPS or neither for HTTP")
	case c.APIKey != "" && c.APICert == "":
		return errorf("api_key", "is set but api_cert is not; set both for HTTPS or neither for HTTP")
	}
	return nil
}

func (c *Dispatcher) checkAuthDefault() error {
	if c.APIAuthDefault != "deny" && c.APIAuthDefault != "allow" {
		return errorf("api_auth_default", `must be "deny" or "allow", got %s`, quote(c.APIAuthDefault))
	}
	return nil
}

// The values of resolve.
const (
	ResolveDNS      = "dns"
	ResolveRegistry = "registry"
)

func (c *Dispatcher) checkResolve() error {
	if c.Resolve != ResolveDNS && c.Resolve != ResolveRegistry {
		return errorf("resolve", `must be %q or %q, got %s`, ResolveDNS, ResolveRegistry, quote(c.Resolve))
	}
	return nil
}

// checkTrustedProxies accepts IP addresses and CIDR prefixes, IPv4 and
// IPv6.
func (c *Dispatcher) checkTrustedProxies() error {
	for _, s := range c.APITrustedProxies {
		if _, err := ParseAddrOrPrefix(s); err != nil {
			return errorf("api_trusted_proxies", "must be IP addresses or CIDRs, got %s", quote(s))
		}
	}
	return nil
}

// ParseAddrOrPrefix reads an IP address ("10.0.0.1", "::1", a single
// address) or a CIDR prefix ("10.0.0.0/8"). The prefix is masked. Peers
// are compared unmapped, so an IPv4-mapped IPv6 address or prefix
// ("::ffff:10.0.0.0/104") is returned as IPv4 ("10.0.0.0/8").
func ParseAddrOrPrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		p = p.Masked()
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// maxCertDays keeps certificate validity within what x509 and time.Time
// handle comfortably.
const maxCertDays = 36500

func (c *Dispatcher) checkCertDays() error {
	if c.CertDays < 1 || c.CertDays > maxCertDays {
		return errorf("cert_days", "must be 1-%d, got %d", maxCertDays, c.CertDays)
	}
	return nil
}

// maxOverlapDays bounds cert_overlap_days (ten years).
const maxOverlapDays = 3650

func (c *Dispatcher) checkLifecycle() error {
	if c.CertOverlapDays < 0 || c.CertOverlapDays > maxOverlapDays {
		return errorf("cert_overlap_days", "must be 0-%d, got %d", maxOverlapDays, c.CertOverlapDays)
	}
	if c.RenewInterval.Duration < 0 {
		return errorf("renew_interval", "must not be negative (0 turns the sweep off), got %s", FormatDuration(c.RenewInterval.Duration))
	}
	return nil
}

// checkStore never echoes the value: a URL may carry a password.
func (c *Dispatcher) checkStore() error {
	s := strings.ToLower(c.Store)
	if c.Store == "" || strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		return nil
	}
	return errorf("store", "must be empty (files in state_dir) or a postgres:// URL")
}

// HTTPS reports whether the API serves HTTPS (api_cert and api_key set).
func (c *Dispatcher) HTTPS() bool { return c.APICert != "" && c.APIKey != "" }

// LogOutput resolves the log setting: Log when set, else "syslog" when
// /dev/log exists at the time of the call, else "stderr".
func (c *Dispatcher) LogOutput() string { return logOutput(c.Log, fileExists) }
