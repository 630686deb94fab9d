package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dispatcher-dev/dispatcher/pki"
)

// Agent is a registry record, agents/HOST.json. It reads and writes the
// Perl dispatcher's records: hostname, ip, paired (ISO 8601), expiry
// (OpenSSL text form, "Jun  7 16:28:00 2027 GMT") and reqid (of the pairing
// request) are the Perl fields; port, key_fingerprint, serial, tags and
// last_contact are new and optional. Any other field (the Perl dispatcher's
// dispatcher_serial, serial_status, serial_broadcast, serial_confirmed, or
// fields of a later version) is kept in Extra and written back as it was.
type Agent struct {
	Hostname       string
	IP             string
	Port           int               // serving port the agent paired with; 0 = not recorded
	Paired         string            // when it was paired, ISO 8601 as written
	Expiry         string            // certificate notAfter, OpenSSL text form
	ReqID          string            // pairing request id
	KeyFingerprint string            // "sha256:…" of the agent's public key (pki.Fingerprint); "" = not pinned
	Serial         string            // certificate serial (pki.FormatSerial)
	Tags           map[string]string // free-form labels
	LastContact    time.Time         // last successful contact; zero = never recorded

	// Extra holds every other field with its JSON value as read (without
	// insignificant white space: numbers and strings keep their spelling).
	Extra map[string]json.RawMessage
}

// The JSON names of Agent's fields.
const (
	fieldHostname       = "hostname"
	fieldIP             = "ip"
	fieldPort           = "port"
	fieldPaired         = "paired"
	fieldExpiry         = "expiry"
	fieldReqID          = "reqid"
	fieldKeyFingerprint = "key_fingerprint"
	fieldSerial         = "serial"
	fieldTags           = "tags"
	fieldLastContact    = "last_contact"
)

// MarshalJSON writes the record with its keys sorted. The Perl fields are
// always present; the new ones only when set.
func (a Agent) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(a.Extra)+10)
	for k, v := range a.Extra {
		m[k] = v
	}
	m[fieldHostname] = a.Hostname
	m[fieldIP] = a.IP
	m[fieldPaired] = a.Paired
	m[fieldExpiry] = a.Expiry
	m[fieldReqID] = a.ReqID
	if a.Port != 0 {
		m[fieldPort] = a.Port
	}
	if a.KeyFingerprint != "" {
		m[fieldKeyFingerprint] = a.KeyFingerprint
	}
	if a.Serial != "" {
		m[fieldSerial] = a.Serial
	}
	if len(a.Tags) > 0 {
		m[fieldTags] = a.Tags
	}
	if !a.LastContact.IsZero() {
		m[fieldLastContact] = a.LastContact.UTC().Format(time.RFC3339)
	}
	return json.Marshal(m)
}

// UnmarshalJSON reads a record. A known field of the wrong type is an
// error naming it, except that a port written as a string of digits is
// accepted; a null known field is left empty.
func (a *Agent) UnmarshalJSON(data []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	var out Agent
	strs := map[string]*string{
		fieldHostname:       &out.Hostname,
		fieldIP:             &out.IP,
		fieldPaired:         &out.Paired,
		fieldExpiry:         &out.Expiry,
		fieldReqID:          &out.ReqID,
		fieldKeyFingerprint: &out.KeyFingerprint,
		fieldSerial:         &out.Serial,
	}
	for k, v := range raw {
		if bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			if _, known := strs[k]; known || k == fieldPort || k == fieldTags || k == fieldLastContact {
				continue
			}
		}
		var err error
		switch k {
		case fieldPort:
			out.Port, err = decodePort(v)
		case fieldTags:
			err = json.Unmarshal(v, &out.Tags)
		case fieldLastContact:
			var s string
			if err = json.Unmarshal(v, &s); err == nil && s != "" {
				out.LastContact, err = parseStamp(s)
			}
		default:
			p, known := strs[k]
			if !known {
				if out.Extra == nil {
					out.Extra = make(map[string]json.RawMessage)
				}
				var c bytes.Buffer
				if err := json.Compact(&c, v); err != nil {
					return fmt.Errorf("field %q: %w", k, err)
				}
				out.Extra[k] = c.Bytes()
				continue
			}
			err = json.Unmarshal(v, p)
		}
		if err != nil {
			return fmt.Errorf("field %q: %w", k, err)
		}
	}
	*a = out
	return nil
}

// decodePort reads a port written as a number or as a string of digits.
func decodePort(v json.RawMessage) (int, error) {
	var n int
	if err := json.Unmarshal(v, &n); err == nil {
		return checkPort(n)
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return 0, errors.New("want a port number")
	}
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("want a port number, got %q", s)
	}
	return checkPort(n)
}

func checkPort(n int) (int, error) {
	if n < 0 || n > 65535 {
		return 0, fmt.Errorf("port %d is out of range 1-65535", n)
	}
	return n, nil
}

// ExtraString returns the string value of the extra field key (a Perl
// field such as serial_status), or "" when it is absent or not a string.
func (a Agent) ExtraString(key string) string {
	var s string
	if v, ok := a.Extra[key]; ok && json.Unmarshal(v, &s) == nil {
		return s
	}
	return ""
}

func (f *Files) agentPath(host string) (string, error) {
	if err := pki.ValidHostname(host); err != nil {
		return "", fmt.Errorf("registry: %w", err)
	}
	return filepath.Join(f.dir, "agents", host+".json"), nil
}

// GetAgent returns the record of host. A host that is not registered gives an
// error wrapping ErrNotFound; a host name that could not be registered (not
// a valid DNS name) is an error before any file is touched.
func (f *Files) GetAgent(host string) (Agent, error) {
	path, err := f.agentPath(host)
	if err != nil {
		return Agent{}, err
	}
	a, err := readAgent(path, host)
	if err != nil {
		return a, err
	}
	return f.withContact(a), nil
}

func readAgent(path, host string) (Agent, error) {
	data, err := readRecord(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Agent{}, fmt.Errorf("agent %s is not registered: %w", host, ErrNotFound)
	}
	if err != nil {
		return Agent{}, fmt.Errorf("read registry record %s: %w", path, err)
	}
	var a Agent
	if err := json.Unmarshal(data, &a); err != nil {
		return Agent{}, fmt.Errorf("read registry record %s: %w", path, err)
	}
	if a.Hostname == "" {
		a.Hostname = host
	}
	return a, nil
}

// ListAgents returns every registered agent, sorted by host name.
func (f *Files) ListAgents() ([]Agent, error) {
	names, err := f.AgentNames()
	if err != nil {
		return nil, err
	}
	agents := make([]Agent, 0, len(names))
	for _, n := range names {
		a, err := readAgent(filepath.Join(f.dir, "agents", n+".json"), n)
		if errors.Is(err, ErrNotFound) {
			continue // unpaired meanwhile
		}
		if err != nil {
			return nil, err
		}
		agents = append(agents, f.withContact(a))
	}
	sort.SliceStable(agents, func(i, j int) bool { return agents[i].Hostname < agents[j].Hostname })
	return agents, nil
}

// PutAgent creates or replaces the record of a.Hostname, atomically.
func (f *Files) PutAgent(a Agent) error {
	path, err := f.agentPath(a.Hostname)
	if err != nil {
		return err
	}
	data, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return fmt.Errorf("encode registry record of %s: %w", a.Hostname, err)
	}
	return writeRecord(path, append(data, '\n'))
}

// DeleteAgent removes the record of host. A host that is not registered
// gives an error wrapping ErrNotFound.
func (f *Files) DeleteAgent(host string) error {
	path, err := f.agentPath(host)
	if err != nil {
		return err
	}
	if err := os.Remove(path); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("agent %s is not registered: %w", host, ErrNotFound)
	} else if err != nil {
		return fmt.Errorf("remove registry record %s: %w", path, err)
	}
	if c, err := f.contactPath(host); err == nil {
		_ = os.Remove(c) // a new record of that name starts without it
	}
	return nil
}
