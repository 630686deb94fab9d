// Package demo builds the throw-away world of `dispatcher demo`: in a
// temporary directory, a CA and a dispatcher identity, a pairing listener,
// three agents on loopback ports that pair through the real protocol (each
// approved after its code is compared with the dispatcher's), then one run
// with arguments, one ping and one discovery. Every step is the real binary
// started with the command line an operator would type, printed before it
// runs, so the demo doubles as a tour. All processes are stopped and the
// directory removed at the end (unless asked to keep it).
package demo
