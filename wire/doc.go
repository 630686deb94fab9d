// Package wire is the operational protocol between the dispatcher and its
// agents (port 7443, docs in WIRE.md): the request and answer types, the
// dispatcher's client, and the agent's request limits, strict decoding and
// answer writers. It knows nothing of files, config or roles; it imports
// only the standard library, zap and pki.
//
// # Client
//
// [NewClient] makes a [Client] from a [ClientConfig]: the dispatcher
// certificate, the CA, the connect and read timeouts and an identity check
// ([ClientConfig.VerifyPeer], by default [pki.VerifyAgent] without a pinned
// key). One Client serves a whole fan-out: one http.Transport with
// keep-alive (HTTP/1.1 only) and a TLS session cache for all agents. Each
// call names a [Target]: the host name the agent certificate must carry
// (also the TLS server name and the key connections are pooled under) and
// the address to dial. The identity check runs on every handshake, resumed
// ones included, so a cached session never skips it.
//
// [Client.Ping], [Client.Run] and [Client.Capabilities] are the typed calls,
// with [Client.Renew], [Client.RenewComplete], [Client.PushRevocations] and
// [Client.PushDispatcherSerial] for the certificate lifecycle;
// [Client.Do] sends any other request. A context made with [WithPeer]
// receives the certificates the agent presented on the connection the
// answer came on (new, resumed or kept alive). Request bodies always carry a
// Content-Length (never chunked) and few headers, as Perl agents need.
// Answers larger than [ClientConfig.MaxResponseSize] are refused.
//
// The read timeout runs from the moment a request has a connection to the
// end of its answer; for Run it is extended by the request's Timeout, the
// time the agent lets the script run. A shorter deadline on the context
// wins. Cancelling the context closes the connection, which tells the agent
// to kill the script.
//
// # Errors
//
// Every Client method returns an [*Error] with the agent's Host and a
// [ErrorKind]: [KindConnect], [KindTLS], [KindTimeout], [KindHTTP],
// [KindProtocol] or [KindCanceled]. Its message is short and lowercase,
// without the host name, made to be shown in the error field of a per-host
// result, for example:
//
//	connect to 10.0.0.5:7443: connection refused
//	agent identity check failed: host name mismatch: certificate is for "web-02", dialled "web-01"
//	agent refused the tls handshake: tls: bad certificate
//	connect timeout after 10s
//	read timeout after 60s
//	agent refused: 403 serial mismatch
//	not supported by this agent version (404 on POST /renew)
//	answer larger than 65 MiB (lower output_limit on the agent)
//	cancelled
//
// The cause stays reachable: errors.As finds the [*pki.IdentityError] of a
// failed identity check, errors.Is finds [ErrNotFound] for a 404 (an agent
// too old for the request), syscall errors of a failed connect, and
// context.Canceled or context.DeadlineExceeded. A refused run is not an
// error: the agent answers 200 with exit -1 and an error string, and Run
// returns that [RunResponse].
//
// # Output encoding
//
// Script output is bytes; JSON strings are text. A stream that is valid
// UTF-8 is in stdout / stderr as it is, provided it is small (at most
// [SmallOutput], 64 KiB) or its JSON escaping is no longer than base64
// would be. Otherwise stdout_b64 / stderr_b64 hold the exact bytes in
// standard base64, and the text field holds the stream with each invalid
// byte replaced by U+FFFD (what a Perl dispatcher can show) when it is
// small, and is empty when it is not. So no stream takes more than about
// 4/3 of its size in an answer, however many control bytes it holds
// (JSON escapes a NUL byte as six characters). [RunResponse.SetOutput]
// writes the fields, [RunResponse.Output] returns the exact bytes; stream
// events do the same with data and data_b64 ([NewStreamEvent],
// [StreamEvent.Bytes]).
//
// An agent does not build its answer in memory: [WriteRunAnswer] computes
// the exact length of the JSON first (Content-Length), then encodes it
// straight from the output as the runner kept it ([RunAnswer]: raw bytes
// in pieces) through a small buffer; [StreamWriter.Output] and
// [StreamWriter.FinalAnswer] do the same for a stream. The bytes are
// those of [WriteJSON] with SetOutput.
//
// # Streaming
//
// A dispatcher asks for live output with Accept: application/x-ndjson on
// POST /run ([WantsStream] on the agent side). A Go agent then answers 200
// with Content-Type application/x-ndjson and one JSON object per line,
// flushed as it is written ([StreamWriter]):
//
//	{"stream":"stdout","data":"building\n"}
//	{"stream":"stderr","data":"warning: …\n"}
//	{"script":"deploy","exit":0,"stdout":"building\n","stderr":"warning: …\n","reqid":"…"}
//
// Lines with "stream" are chunks of output in order; the line with "exit"
// is the result, with the same fields as the plain answer (and the whole
// output), and ends the stream. Readers skip blank lines and objects of
// neither kind. An agent that does not stream (a Perl agent) ignores the
// header and answers plain JSON; Run accepts both.
//
// # Agent side
//
// [LimitRequests] refuses more than [MaxHeaderLines] header lines (431) and
// bodies over [MaxBodySize] (413). The byte size of the headers is left to
// net/http: the agent sets http.Server.MaxHeaderBytes = [MaxHeaderBytes] and
// net/http answers 431 beyond it. [DecodeRequest] reads one JSON object,
// ignoring unknown fields, and returns a [*RequestError] (400 or 413) for
// anything else. Field names are exact: a key that matches a field only
// when case is ignored ({"SCRIPT":…}, which encoding/json alone would
// accept) and a key given twice are refused, so that every reader of a
// body sees the same request. [WriteJSON] and [WriteError] write answers
// with a Content-Length, [WriteRunAnswer] a /run answer.
package wire
