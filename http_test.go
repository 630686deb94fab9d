package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// httpHeaders is a repeatable -H flag.
type httpHeaders []string

func (h *httpHeaders) String() string     { return strings.Join(*h, "; ") }
func (h *httpHeaders) Set(v string) error { *h = append(*h, v); return nil }

// http [-H 'Name: value']… [-repeat N] [-wait REGEXP] [-until REGEXP]
// [-within DURATION] [-bg -o FILE] METHOD URL [BODYFILE]: send a request
// to the API (curl is not on every machine) and print "HTTP STATUS" and
// the body on stdout. Every answer is checked against the API's OpenAPI
// document (roles/api/openapi.json: the schema of its path, method,
// status and content type; for an event stream, of each event), and a
// mismatch fails the script.
//
//	-repeat N   send N requests at once (@I@ in the body becomes 1…N) and
//	            print each answer, in order
//	-wait RE    send again (for up to 20 s) until the body matches RE
//	-until RE   read a streamed body only until what was read matches RE
//	-within D   fail unless the answer (or the -until match) took at most D
//	-bg -o FILE answer in the background: FILE appears, whole, once the
//	            answer is complete (see waitfile); a mismatch with the
//	            document is written into it as a line "openapi: …"
func cmdHTTP(ts *testscript.TestScript, neg bool, args []string) {
	fs := flag.NewFlagSet("http", flag.ContinueOnError)
	var headers httpHeaders
	fs.Var(&headers, "H", "header")
	repeat := fs.Int("repeat", 1, "")
	wait := fs.String("wait", "", "")
	until := fs.String("until", "", "")
	within := fs.Duration("within", 0, "")
	bg := fs.Bool("bg", false, "")
	outFile := fs.String("o", "", "")
	if err := fs.Parse(args); err != nil || neg || fs.NArg() < 2 || fs.NArg() > 3 || *bg && *outFile == "" {
		ts.Fatalf("usage: http [-H 'Name: value']… [-repeat N] [-wait RE] [-until RE] [-within D] [-bg -o FILE] METHOD URL [BODYFILE]")
	}
	method, url := fs.Arg(0), fs.Arg(1)
	body := ""
	if fs.NArg() == 3 {
		body = ts.ReadFile(fs.Arg(2))
	}
	var waitRE, untilRE *regexp.Regexp
	if *wait != "" {
		waitRE = regexp.MustCompile(*wait)
	}
	if *until != "" {
		untilRE = regexp.MustCompile(*until)
	}
	spec, err := loadAPISpec()
	ts.Check(err)
	req := httpRequest{method: method, url: url, headers: headers, until: untilRE}

	if *bg {
		path := ts.MkAbs(*outFile)
		done := make(chan struct{})
		ts.Defer(func() { <-done })
		go func() {
			defer close(done)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var out bytes.Buffer
			resp, err := req.do(ctx, body)
			if err != nil {
				fmt.Fprintf(&out, "error: %v\n", err)
			} else {
				resp.print(&out)
				for _, p := range spec.check(method, url, resp) {
					fmt.Fprintf(&out, "openapi: %s\n", p)
				}
			}
			tmp := path + ".part"
			if os.WriteFile(tmp, out.Bytes(), 0o644) == nil {
				_ = os.Rename(tmp, path)
			}
		}()
		return
	}

	start := time.Now()
	deadline := start.Add(20 * time.Second)
	var out bytes.Buffer
	for {
		out.Reset()
		responses := make([]*httpResponse, *repeat)
		errs := make([]error, *repeat)
		var wg sync.WaitGroup
		for i := range *repeat {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				responses[i], errs[i] = req.do(ctx, strings.ReplaceAll(body, "@I@", strconv.Itoa(i+1)))
			}()
		}
		wg.Wait()
		for i, resp := range responses {
			if errs[i] != nil {
				ts.Fatalf("%s %s: %v", method, url, errs[i])
			}
			for _, p := range spec.check(method, url, resp) {
				ts.Fatalf("%s %s: answer does not match openapi.json: %s", method, url, p)
			}
			resp.print(&out)
		}
		if waitRE == nil || waitRE.Match(responses[0].body) {
			break
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s %s: no answer matched %q in 20 s; the last:\n%s", method, url, *wait, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if took := time.Since(start); *within > 0 && took > *within {
		ts.Fatalf("%s %s took %v, want at most %v", method, url, took.Round(time.Millisecond), *within)
	}
	if *outFile != "" {
		ts.Check(os.WriteFile(ts.MkAbs(*outFile), out.Bytes(), 0o644))
		return
	}
	_, _ = ts.Stdout().Write(out.Bytes())
}

type httpRequest struct {
	method, url string
	headers     []string
	until       *regexp.Regexp
}

type httpResponse struct {
	status      int
	contentType string
	body        []byte
	cut         bool // read only until a match
}

func (r *httpResponse) print(w io.Writer) {
	fmt.Fprintf(w, "HTTP %d\n", r.status)
	w.Write(r.body)
	if len(r.body) > 0 && r.body[len(r.body)-1] != '\n' {
		fmt.Fprintln(w)
	}
}

func (q httpRequest) do(ctx context.Context, body string) (*httpResponse, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, q.method, q.url, rd)
	if err != nil {
		return nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, h := range q.headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok {
			return nil, fmt.Errorf("header %q: want Name: value", h)
		}
		req.Header.Set(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := &httpResponse{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type")}
	if q.until == nil {
		out.body, err = io.ReadAll(resp.Body)
		return out, err
	}
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		out.body = append(out.body, buf[:n]...)
		if q.until.Match(out.body) {
			out.cut = true
			return out, nil
		}
		if err == io.EOF {
			return out, fmt.Errorf("the answer ended without matching %q:\n%s", q.until, out.body)
		}
		if err != nil {
			return out, err
		}
	}
}

// apiSpec checks answers against roles/api/openapi.json.
type apiSpec struct {
	doc      map[string]any
	compiler *jsonschema.Compiler
	mu       sync.Mutex
	schemas  map[string]*jsonschema.Schema
}

const apiSpecURL = "https://dispatcher.invalid/openapi.json"

var (
	apiSpecOnce sync.Once
	apiSpecDoc  *apiSpec
	apiSpecErr  error
)

func loadAPISpec() (*apiSpec, error) {
	apiSpecOnce.Do(func() {
		data, err := os.ReadFile(filepath.Join("roles", "api", "openapi.json"))
		if err != nil {
			apiSpecErr = err
			return
		}
		s := &apiSpec{compiler: jsonschema.NewCompiler(), schemas: map[string]*jsonschema.Schema{}}
		if apiSpecErr = json.Unmarshal(data, &s.doc); apiSpecErr != nil {
			return
		}
		raw, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			apiSpecErr = err
			return
		}
		s.compiler.DefaultDraft(jsonschema.Draft2020)
		s.compiler.AssertFormat()
		if apiSpecErr = s.compiler.AddResource(apiSpecURL, raw); apiSpecErr == nil {
			apiSpecDoc = s
		}
	})
	return apiSpecDoc, apiSpecErr
}

func (s *apiSpec) get(keys ...string) map[string]any {
	m := s.doc
	for _, k := range keys {
		m, _ = m[k].(map[string]any)
	}
	return m
}

// check returns what in r does not match the document.
func (s *apiSpec) check(method, rawURL string, r *httpResponse) []string {
	path := rawURL
	if i := strings.Index(path, "://"); i >= 0 {
		path = path[i+3:]
		if j := strings.IndexByte(path, '/'); j >= 0 {
			path = path[j:]
		} else {
			path = "/"
		}
	}
	path, _, _ = strings.Cut(path, "?")
	media := strings.TrimSpace(strings.SplitN(r.contentType, ";", 2)[0])
	tmpl := s.template(path)
	op := s.get("paths", tmpl, strings.ToLower(method))
	if tmpl == "" || op == nil {
		return s.validate("/components/schemas/Error", r.body)
	}
	resp, _ := op["responses"].(map[string]any)[strconv.Itoa(r.status)].(map[string]any)
	if resp == nil {
		return []string{fmt.Sprintf("status %d of %s %s is not documented", r.status, method, tmpl)}
	}
	loc := "/paths/" + strings.ReplaceAll(tmpl, "/", "~1") + "/" + strings.ToLower(method) + "/responses/" + strconv.Itoa(r.status)
	if ref, ok := resp["$ref"].(string); ok {
		loc = strings.TrimPrefix(ref, "#")
		resp = s.get(strings.Split(strings.TrimPrefix(loc, "/"), "/")...)
	}
	content, _ := resp["content"].(map[string]any)[media].(map[string]any)
	if content == nil {
		return []string{fmt.Sprintf("%s %s answered %d with %q, which is not documented", method, tmpl, r.status, r.contentType)}
	}
	switch media {
	case "application/json":
		return s.validate(loc+"/content/application~1json/schema", r.body)
	case "text/event-stream":
		events, _ := content["x-events"].(map[string]any)
		var problems []string
		body := r.body
		if r.cut { // read until a match: only whole events count
			i := bytes.LastIndex(body, []byte("\n\n"))
			body = body[:i+1]
		}
		sc := bufio.NewScanner(bytes.NewReader(body))
		sc.Buffer(make([]byte, 64<<10), 64<<20)
		kind := ""
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				kind = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ref, _ := events[kind].(map[string]any)["$ref"].(string)
				if ref == "" {
					problems = append(problems, fmt.Sprintf("event %q is not documented", kind))
					continue
				}
				data := []byte(strings.TrimPrefix(line, "data: "))
				problems = append(problems, s.validate(strings.TrimPrefix(ref, "#"), data)...)
			}
		}
		return problems
	}
	return nil
}

func (s *apiSpec) template(path string) string {
	segs := strings.Split(path, "/")
	for tmpl := range s.get("paths") {
		ts := strings.Split(tmpl, "/")
		if len(ts) != len(segs) {
			continue
		}
		match := true
		for i := range ts {
			if ts[i] != segs[i] && !(strings.HasPrefix(ts[i], "{") && segs[i] != "") {
				match = false
			}
		}
		if match {
			return tmpl
		}
	}
	return ""
}

func (s *apiSpec) validate(loc string, body []byte) []string {
	s.mu.Lock()
	sch, ok := s.schemas[loc]
	if !ok {
		var err error
		if sch, err = s.compiler.Compile(apiSpecURL + "#" + loc); err != nil {
			s.mu.Unlock()
			return []string{fmt.Sprintf("compile %s: %v", loc, err)}
		}
		s.schemas[loc] = sch
	}
	s.mu.Unlock()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return []string{fmt.Sprintf("not JSON (%v): %.200s", err, body)}
	}
	if err := sch.Validate(inst); err != nil {
		return []string{fmt.Sprintf("%s: %v\n%.2000s", loc, err, body)}
	}
	return nil
}
