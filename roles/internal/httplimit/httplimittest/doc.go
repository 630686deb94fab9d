// Package httplimittest holds what the hostile-input tests of the API and
// pairing listeners share: sending raw bytes on a connection and reading
// the one answer ([Exchange]), a chunked body of a given size
// ([WriteChunked]), and telling a connection closed by the server
// ([IsClosed]). For tests only.
package httplimittest
