package api

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/dispatcher-dev/dispatcher/roles/internal/control"
)

// openapiSource is the API's OpenAPI 3.1 document as written, with
// versionPlaceholder where the version goes.
//
//go:embed openapi.json
var openapiSource []byte

const versionPlaceholder = `"@VERSION@"`

// openapiDoc returns the OpenAPI document served at /openapi.json, its
// info.version set to version.
func openapiDoc(version string) []byte {
	v, _ := json.Marshal(version)
	return bytes.Replace(openapiSource, []byte(versionPlaceholder), v, 1)
}

var semverCore = regexp.MustCompile(`^v?([0-9]+\.[0-9]+\.[0-9]+)`)

// liveVersion is the version of /openapi-live.json: X.Y.Z of the API's
// version (0.0.0 for a build without a release version) and the time of
// the scan, X.Y.Z+EPOCH, so that a client can tell two scans apart.
func liveVersion(version string, at time.Time) string {
	core := "0.0.0"
	if m := semverCore.FindStringSubmatch(version); m != nil {
		core = m[1]
	}
	return fmt.Sprintf("%s+%d", core, at.Unix())
}

// liveInfo is the x-dispatcher-live member of /openapi-live.json: when the
// scan ran and what each agent that answered offers.
type liveInfo struct {
	Scanned string              `json:"scanned"`
	Agents  map[string][]string `json:"agents"` // host → its script names
}

// liveOpenAPI returns the document of /openapi-live.json for a discovery of
// every registered agent: the Host schema's enum lists the agents that
// answered, the Script schema's enum their scripts (an enum is left out
// when it would be empty, as JSON Schema asks), x-dispatcher-live says
// which agent offers which script, and info.version is liveVersion.
func liveOpenAPI(version string, report *control.DiscoverReport, at time.Time) ([]byte, error) {
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(openapiDoc(version)))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("openapi document: %w", err)
	}
	info := liveInfo{Scanned: at.UTC().Format(time.RFC3339), Agents: map[string][]string{}}
	var hosts []string
	scriptSet := map[string]bool{}
	if report != nil {
		for _, r := range report.Results {
			if r.Status != control.StatusOK {
				continue // unreachable, refused, failed the identity checks
			}
			hosts = append(hosts, r.Host)
			names := []string{}
			for _, s := range r.Scripts {
				names = append(names, s.Name)
				scriptSet[s.Name] = true
			}
			sort.Strings(names)
			info.Agents[r.Host] = names
		}
	}
	sort.Strings(hosts)
	scripts := make([]string, 0, len(scriptSet))
	for s := range scriptSet {
		scripts = append(scripts, s)
	}
	sort.Strings(scripts)

	get := func(m map[string]any, path ...string) (map[string]any, error) {
		for _, k := range path {
			next, ok := m[k].(map[string]any)
			if !ok {
				return nil, fmt.Errorf("openapi document has no %s", strings.Join(path, "."))
			}
			m = next
		}
		return m, nil
	}
	infoObj, err := get(doc, "info")
	if err != nil {
		return nil, err
	}
	infoObj["version"] = liveVersion(version, at)
	infoObj["description"] = fmt.Sprint(infoObj["description"]) +
		" This is the live document: Host and Script are limited to the agents that answered at " + info.Scanned + " and their scripts."
	for name, values := range map[string][]string{"Host": hosts, "Script": scripts} {
		schema, err := get(doc, "components", "schemas", name)
		if err != nil {
			return nil, err
		}
		if len(values) > 0 {
			schema["enum"] = values
		}
	}
	doc["x-dispatcher-live"] = info
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
