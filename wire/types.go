package wire

// Limits of the operational protocol (WIRE.md). Perl agents read at most 32
// headers and the body by Content-Length; a Go agent refuses more.
const (
	MaxBodySize    = 1 << 20 // request body, bytes (413 beyond)
	MaxHeaderLines = 32      // request header lines (431 beyond)
	MaxHeaderBytes = 8 << 10 // request header bytes (431 beyond)
)

// Paths of the operational protocol.
const (
	PathPing          = "/ping"
	PathRun           = "/run"
	PathCapabilities  = "/capabilities"
	PathRenew         = "/renew"
	PathRenewComplete = "/renew-complete"
)

// ContentTypeNDJSON asks a Go agent to stream a run's output.
const ContentTypeNDJSON = "application/x-ndjson"

// PingRequest is the body of POST /ping.
type PingRequest struct {
	ReqID string `json:"reqid"`
}

// PingResponse answers POST /ping. Expiry is the agent certificate's
// notAfter in OpenSSL text form ("Jun  7 16:28:00 2027 GMT"), which Perl
// dispatchers parse; ExpiryISO carries the same instant in RFC 3339.
type PingResponse struct {
	Status    string `json:"status"`
	Host      string `json:"host"`
	Version   string `json:"version"`
	Expiry    string `json:"expiry"`
	ExpiryISO string `json:"expiry_iso,omitempty"`
	ReqID     string `json:"reqid"`
}

// RunRequest is the body of POST /run. Timeout is in seconds (0: the
// agent's default).
type RunRequest struct {
	Script   string   `json:"script"`
	Args     []string `json:"args"`
	ReqID    string   `json:"reqid"`
	Username string   `json:"username"`
	Token    string   `json:"token"`
	Timeout  int      `json:"timeout,omitempty"`
}

// RunResponse answers POST /run, and is the final line of a streamed run.
// A refused run is still a 200 with Exit -1 and Error set.
//
// Stdout and Stderr are JSON strings. Output that is not valid UTF-8, or
// whose JSON escaping would make it longer than base64 (control bytes), is
// in StdoutB64/StderrB64, exactly, in standard base64; the text then holds
// it with U+FFFD for invalid bytes when the stream is small (SmallOutput,
// what a Perl dispatcher can show), and is empty otherwise (the policy is
// in output.go). Use Output to get the exact bytes back.
type RunResponse struct {
	Script     string `json:"script"`
	Exit       int    `json:"exit"`
	Stdout     string `json:"stdout"`
	Stderr     string `json:"stderr"`
	StdoutB64  string `json:"stdout_b64,omitempty"`
	StderrB64  string `json:"stderr_b64,omitempty"`
	ReqID      string `json:"reqid"`
	Truncated  bool   `json:"truncated,omitempty"`
	Signal     string `json:"signal,omitempty"`
	DurationMS int64  `json:"duration_ms,omitempty"`
	Error      string `json:"error,omitempty"`
}

// SetOutput stores the streams' bytes losslessly (see RunResponse). An
// agent writes its answer with WriteRunAnswer or StreamWriter.FinalAnswer
// instead, which encode the same JSON without these copies.
func (r *RunResponse) SetOutput(stdout, stderr []byte) {
	r.Stdout, r.StdoutB64 = encodeOutput(stdout)
	r.Stderr, r.StderrB64 = encodeOutput(stderr)
}

// Output returns the exact bytes of stdout and stderr.
func (r *RunResponse) Output() (stdout, stderr []byte) {
	return decodeOutput(r.Stdout, r.StdoutB64), decodeOutput(r.Stderr, r.StderrB64)
}

// StreamEvent is one line of a streamed run (Accept: application/x-ndjson):
// a chunk of output. Data holds text; DataB64 the exact bytes when the
// chunk is not valid UTF-8 (or is larger than SmallOutput and cheaper in
// base64), as for RunResponse. The stream ends with one RunResponse line.
type StreamEvent struct {
	Stream  string `json:"stream"` // "stdout" or "stderr"
	Data    string `json:"data"`
	DataB64 string `json:"data_b64,omitempty"`
}

// Bytes returns the exact bytes of the chunk.
func (e StreamEvent) Bytes() []byte { return decodeOutput(e.Data, e.DataB64) }

// NewStreamEvent makes the line for a chunk of output.
func NewStreamEvent(stream string, data []byte) StreamEvent {
	text, b64 := encodeOutput(data)
	return StreamEvent{Stream: stream, Data: text, DataB64: b64}
}

// ScriptInfo describes one allowlisted script in /capabilities.
type ScriptInfo struct {
	Name       string `json:"name"`
	Path       string `json:"path"`
	Executable bool   `json:"executable"`
}

// CapabilitiesResponse answers GET /capabilities.
type CapabilitiesResponse struct {
	Status  string            `json:"status"`
	Host    string            `json:"host"`
	Version string            `json:"version"`
	Tags    map[string]string `json:"tags"`
	Scripts []ScriptInfo      `json:"scripts"`
}

// ErrorResponse is the body of a refusal (403 serial mismatch, 413, 431, …).
type ErrorResponse struct {
	Error string `json:"error"`
}

// Messages that scripts and Perl dispatchers already parse.
const (
	ErrScriptNotPermitted = "script not permitted"
	ErrSerialMismatch     = "serial mismatch"
	ErrCertRevoked        = "certificate revoked"
	ErrForbidden          = "forbidden"
)
