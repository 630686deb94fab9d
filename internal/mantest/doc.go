// Package mantest checks generated man pages in tests: that groff and man
// render them without a warning. Only tests import it.
package mantest
