// Package pki holds everything the dispatcher does with keys and
// certificates: the private CA, the two kinds of leaf certificate it issues,
// the checks made on certificate requests and on peers, the renewal
// decision, and the text formats shared with the Perl dispatcher (serial
// numbers, OpenSSL times). It also writes state files atomically.
//
// It knows nothing of configuration, the registry or the network: callers
// hand it bytes, certificates and plain values, and get back the same.
//
// # Identity
//
// The dispatcher's CA (see [NewCA], [LoadCA]) issues two kinds of
// certificate. [CA.IssueDispatcher] makes the dispatcher's own, with
// extended key usage clientAuth and serverAuth and the URI SAN
// urn:dispatcher:dispatcher. [CA.SignAgentCSR] makes an agent's from its
// certificate request, taking nothing from the request but the public key:
// the host name is the one the operator approved, the usage is serverAuth
// only and the URI SAN is urn:dispatcher:agent. A certificate's role is
// read back with [CertRole]; one without a role URI is a legacy certificate
// from the Perl dispatcher ([RoleNone]).
//
// On every connection the agent calls [VerifyDispatcher] on its client and
// the dispatcher calls [VerifyAgent] on the agent, so that a stolen agent
// certificate cannot drive other agents and a dispatcher never talks to an
// impostor. Legacy certificates pass only with a pin: the dispatcher-serial
// file on the agent side, a pinned public key on the dispatcher side.
// Revocation lists ([ParseSerialList], [SerialSet]) are checked by callers.
//
// Keys are ECDSA P-256 ([GenerateKey]); RSA and ECDSA keys and CAs made by
// the Perl dispatcher are read and used as they are ([ParseKeyPEM]).
//
// Time and randomness come from [Options], so that expiry and renewal
// ([NeedsRenewal]) are tested with a fixed clock.
//
// # Errors
//
// Errors are lowercase, name what was being done and, where the operator can
// act, say what to do next. The identity checks return *[IdentityError],
// whose Kind callers can branch on (with errors.As) and whose Reason is safe
// to show to a peer or a user: it never contains key material. Parsers
// ([ParseCSR], [ParseSerial], [ParseKeyPEM], [ParseOpenSSLTime]) never panic
// on any input and say what is wrong with it; [ParseSerialList] keeps the
// good lines and reports the bad ones by line number.
//
// [WriteNewFileAtomic] reports an existing file with an error wrapping
// fs.ErrExist. Private keys never appear in any error or message.
package pki
