// Package cmdutil holds what every role's command line shares: the
// ExitError type that carries an exit code from a command to roles.Main,
// the build information printed by --version, Permute, which lets
// options appear before or after a command's arguments as the Perl
// dispatcher allowed, and LoadDispatcherConfig, the dispatcher.conf and
// logger set-up the dispatcher, api and pairing roles share.
//
// Commands return errors; they never print them and never exit. roles.Main
// is the one place that turns an error into text on stderr and an exit code:
// an *ExitError supplies its own code, anything else exits 1.
package cmdutil
