// Package pairing is the pairing role (dispatcher-pairing, dispatcher
// pairing-mode): the TLS listener on 7444 where agents ask to be enrolled,
// and the approval prompt. It arrives with the pairing issue; until then the
// role only answers --version and --help.
package pairing
