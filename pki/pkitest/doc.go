// Package pkitest makes throw-away certificate authorities and certificates
// for tests of other packages.
//
// [NewCA] returns a [CA] whose methods issue ready-to-use tls.Certificate
// values (with Leaf set) for the three kinds of peer the dispatcher meets: an
// agent ([CA.Agent], made from a CSR exactly as pairing does), the dispatcher
// ([CA.Dispatcher]) and a legacy certificate of the Perl dispatcher
// ([CA.Legacy]: common name only, no SANs, no key usages, small serial).
// [CA.Issue] signs any other template, such as an expired certificate;
// [V1Cert] makes the X.509 v1 RSA certificates openssl made for the Perl
// dispatcher;
// [CA.Pool] is the pool to verify against; [CA.WriteFiles] lays down ca.crt
// and ca.key with their production modes and [PEM] turns a tls.Certificate
// into the bytes of agent.crt and agent.key.
//
// Everything is made with ECDSA P-256 keys and the real pki issuing code, so
// that a test exercises the certificates production makes. Failures end the
// test through testing.TB; nothing returns an error.
package pkitest
