// Package pgtest starts throw-away PostgreSQL servers for tests: initdb
// into a temporary directory, a server on a free 127.0.0.1 port and a
// Unix socket in that directory, stopped and removed when the test ends.
//
// The binaries are the Debian postgresql package's (initdb and postgres
// from PATH, else the newest /usr/lib/postgresql/*/bin). When they are
// missing the test fails — CI must never skip the PostgreSQL store's tests
// without saying so — unless DISPATCHER_SKIP_POSTGRES=1, which skips it.
// As root, initdb and the server run as the user postgres (the package
// creates it), since PostgreSQL refuses to run as root.
package pgtest
