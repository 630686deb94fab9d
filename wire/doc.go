// Package wire will hold the types of the two network protocols (the
// operational protocol on 7443 and pairing on 7444), the client, and the
// server-side limits and strict decoding. It knows nothing of files, config
// or roles; it may import pki, the standard library and zap.
package wire
