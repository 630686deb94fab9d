package config

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"go.uber.org/zap"
)

// Default agent paths.
const (
	DefaultAgentConfig   = "/etc/dispatcher-agent/agent.conf"
	DefaultScriptsConfig = "/etc/dispatcher-agent/scripts.conf"
	DefaultAgentDir      = "/etc/dispatcher-agent"
)

// Agent is agent.conf, the configuration of the agent daemon and of its
// local commands. Field comments give the key's default.
type Agent struct {
	Hostname string `toml:"hostname"` // the system host name (os.Hostname)
	Port     int    `toml:"port"`     // 7443
	Bind     string `toml:"bind"`     // "" = all addresses

	Cert                 string `toml:"cert"`                   // /etc/dispatcher-agent/agent.crt
	Key                  string `toml:"key"`                    // /etc/dispatcher-agent/agent.key
	CA                   string `toml:"ca"`                     // /etc/dispatcher-agent/ca.crt
	RevokedSerials       string `toml:"revoked_serials"`        // /etc/dispatcher-agent/revoked-serials
	DispatcherSerialPath string `toml:"dispatcher_serial_path"` // /etc/dispatcher-agent/dispatcher-serial

	// ScriptDirs are absolute directories every script must live in; empty
	// means any absolute path in scripts.conf is allowed. Written as a
	// colon-separated string (or, in TOML, an array); cleaned.
	ScriptDirs []string `toml:"script_dirs"`

	AuthHook    string   `toml:"auth_hook"`    // "" = no hook
	HookTimeout Duration `toml:"hook_timeout"` // 10s
	PairingPort int      `toml:"pairing_port"` // 7444

	// AllowedIPs are the raw IP and CIDR strings, unparsed; empty allows
	// every address. Written comma-separated (or, in TOML, an array).
	AllowedIPs []string `toml:"allowed_ips"`

	RateLimitVolume  RateLimit `toml:"rate_limit_volume"`  // 10/60/300
	RateLimitProbe   RateLimit `toml:"rate_limit_probe"`   // 3/600/3600
	RateLimitDisable bool      `toml:"rate_limit_disable"` // false

	MaxConcurrent  int      `toml:"max_concurrent"`  // 64
	OutputLimit    Size     `toml:"output_limit"`    // 16MiB, per stream
	DefaultTimeout Duration `toml:"default_timeout"` // 0 = no limit

	Tags map[string]string `toml:"tags"` // empty, never nil

	Log       string `toml:"log"`        // "" = syslog if /dev/log exists, else stderr (see LogOutput)
	LogFormat string `toml:"log_format"` // "kv" or "json"

	// Warnings found while loading, also logged; nil for DefaultAgent.
	Warnings []Warning `toml:"-"`
}

// DefaultAgent returns the configuration used when agent.conf is empty or
// absent. Hostname is the system host name, or "" (which Validate rejects)
// when it cannot be read.
func DefaultAgent() *Agent {
	c := defaultAgent()
	c.Hostname, _ = os.Hostname()
	return c
}

func defaultAgent() *Agent {
	dir := DefaultAgentDir
	return &Agent{
		Port:                 7443,
		Cert:                 filepath.Join(dir, "agent.crt"),
		Key:                  filepath.Join(dir, "agent.key"),
		CA:                   filepath.Join(dir, "ca.crt"),
		RevokedSerials:       filepath.Join(dir, "revoked-serials"),
		DispatcherSerialPath: filepath.Join(dir, "dispatcher-serial"),
		HookTimeout:          seconds(10),
		PairingPort:          7444,
		RateLimitVolume:      RateLimit{Limit: 10, Window: 60 * time.Second, Block: 300 * time.Second},
		RateLimitProbe:       RateLimit{Limit: 3, Window: 600 * time.Second, Block: 3600 * time.Second},
		MaxConcurrent:        64,
		OutputLimit:          16 * MiB,
		Tags:                 map[string]string{},
		LogFormat:            "kv",
	}
}

func (c *Agent) setters() map[string]setter {
	return map[string]setter{
		"hostname":               setString(&c.Hostname),
		"port":                   setInt(&c.Port),
		"bind":                   setString(&c.Bind),
		"cert":                   setString(&c.Cert),
		"key":                    setString(&c.Key),
		"ca":                     setString(&c.CA),
		"revoked_serials":        setString(&c.RevokedSerials),
		"dispatcher_serial_path": setString(&c.DispatcherSerialPath),
		"script_dirs": func(v value) (err error) {
			c.ScriptDirs, err = dirsValue(v)
			return err
		},
		"auth_hook":    setString(&c.AuthHook),
		"hook_timeout": setDuration(&c.HookTimeout),
		"pairing_port": setInt(&c.PairingPort),
		"allowed_ips": func(v value) (err error) {
			c.AllowedIPs, err = listValue(v, splitAddrs, true)
			return err
		},
		"rate_limit_volume":  setRateLimit(&c.RateLimitVolume),
		"rate_limit_probe":   setRateLimit(&c.RateLimitProbe),
		"rate_limit_disable": setBool(&c.RateLimitDisable),
		"max_concurrent":     setInt(&c.MaxConcurrent),
		"output_limit":       setSize(&c.OutputLimit),
		"default_timeout":    setDuration(&c.DefaultTimeout),
		"tags": func(v value) (err error) {
			c.Tags, err = stringMapValue(v, "tags")
			return err
		},
		"log":        setString(&c.Log),
		"log_format": setString(&c.LogFormat),
	}
}

// LoadAgent reads agent.conf (TOML or legacy) over the defaults and
// validates it. hostname supplies the default host name (nil: os.Hostname);
// it is called only when the file sets no hostname. Warnings and errors are
// as for LoadDispatcher.
func LoadAgent(path string, log *zap.Logger, hostname func() (string, error)) (*Agent, error) {
	d, err := readDoc(path, log, lastWins)
	if err != nil {
		return nil, err
	}
	return d.agent(hostname)
}

func (d *doc) agent(hostname func() (string, error)) (*Agent, error) {
	c := defaultAgent()
	if err := d.apply(c.setters()); err != nil {
		return nil, err
	}
	if _, ok := d.tree["hostname"]; !ok {
		if hostname == nil {
			hostname = os.Hostname
		}
		h, err := hostname()
		if err != nil {
			return nil, &Error{File: d.file, Key: "hostname", Msg: fmt.Sprintf("not set and the system host name is unknown (%v); set hostname", err)}
		}
		c.Hostname = h
	}
	c.Warnings = d.warnings
	if err := c.Validate(); err != nil {
		return nil, d.locate(err)
	}
	return c, nil
}

// Validate checks every value; it returns the first problem as an *Error
// with Key set.
func (c *Agent) Validate() error {
	for _, err := range []error{
		c.checkHostname(),
		checkPort("port", c.Port),
		checkBind("bind", c.Bind),
		checkSet("cert", c.Cert),
		checkSet("key", c.Key),
		checkSet("ca", c.CA),
		c.checkScriptDirs(),
		checkPositive("hook_timeout", c.HookTimeout),
		checkPort("pairing_port", c.PairingPort),
		c.checkAllowedIPs(),
		checkRateLimit("rate_limit_volume", c.RateLimitVolume),
		checkRateLimit("rate_limit_probe", c.RateLimitProbe),
		checkMin("max_concurrent", c.MaxConcurrent, 1),
		c.checkOutputLimit(),
		c.checkDefaultTimeout(),
		c.checkTags(),
		checkLog(c.Log, c.LogFormat),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *Agent) checkHostname() error {
	if c.Hostname == "" {
		return errorf("hostname", "must not be empty; set it to the name this agent pairs under")
	}
	if !validHostname(c.Hostname) {
		return errorf("hostname", "must be a DNS name (labels of letters, digits, '-' and '_', at most 253 characters), got %s", quote(c.Hostname))
	}
	return nil
}

func (c *Agent) checkScriptDirs() error {
	for _, d := range c.ScriptDirs {
		if !filepath.IsAbs(d) {
			return errorf("script_dirs", "must be absolute directories, got %s", quote(d))
		}
	}
	return nil
}

func (c *Agent) checkAllowedIPs() error {
	for _, s := range c.AllowedIPs {
		if s == "" || !printable(s) {
			return errorf("allowed_ips", "must be IP addresses or CIDRs, got %s", quote(s))
		}
	}
	return nil
}

func checkRateLimit(key string, r RateLimit) error {
	if err := r.check(); err != nil {
		return errorf(key, "%s", err)
	}
	return nil
}

func (c *Agent) checkOutputLimit() error {
	if c.OutputLimit < 1 {
		return errorf("output_limit", "must be at least 1 byte, got %d", int64(c.OutputLimit))
	}
	return nil
}

func (c *Agent) checkDefaultTimeout() error {
	if c.DefaultTimeout.Duration < 0 {
		return errorf("default_timeout", "must not be negative (0 = no limit), got %s", FormatDuration(c.DefaultTimeout.Duration))
	}
	return nil
}

// Tag keys are 1-64 of A-Z a-z 0-9 _ . - so that "--tag key=value" can name
// them; values are printable text of at most maxTagValue bytes.
const maxTagValue = 1024

// MaxTags is the most tags a dispatcher takes from one agent when it asks
// to be paired (CheckTags). agent.conf itself does not bound their number.
const MaxTags = 64

// maxTagKeyShown bounds the key of a CheckTags error ("tags." and the
// name): a name that long is refused for its length alone, and it came
// from the network.
const maxTagKeyShown = len("tags.") + 64

func (c *Agent) checkTags() error { return checkTags(c.Tags) }

// CheckTags checks tags an agent sent, as agent.conf's [tags] are checked:
// at most MaxTags of them, names of 1-64 letters, digits, '_', '.' or '-',
// values printable text of at most 1024 bytes. A refusal is an *Error with
// Key "tags" (too many) or "tags.NAME" naming the first bad tag in sorted
// order (a name over 64 bytes is shown cut short).
func CheckTags(tags map[string]string) error {
	if len(tags) > MaxTags {
		return errorf("tags", "%d tags; a dispatcher takes at most %d, remove some", len(tags), MaxTags)
	}
	err := checkTags(tags)
	if e, ok := err.(*Error); ok && len(e.Key) > maxTagKeyShown {
		e.Key = e.Key[:maxTagKeyShown] + "…"
	}
	return err
}

func checkTags(tags map[string]string) error {
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		if len(k) > 64 || !validLegacyName(k) {
			return errorf("tags."+k, "tag names are 1-64 letters, digits, '_', '.' or '-'")
		}
		if v := tags[k]; len(v) > maxTagValue || !printable(v) {
			return errorf("tags."+k, "tag values are printable text of at most %d bytes, got %s", maxTagValue, quote(v))
		}
	}
	return nil
}

// LogOutput resolves the log setting: Log when set, else "syslog" when
// /dev/log exists at the time of the call, else "stderr".
func (c *Agent) LogOutput() string { return logOutput(c.Log, fileExists) }
