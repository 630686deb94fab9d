// Package roles picks the role the binary plays from the name it was
// started under (argv[0], never resolving symlinks) or from a subcommand,
// builds that role's command-line application, and decides the exit code.
//
// The role table is one map from basename to role (dispatcher,
// dispatcher-agent, dispatcher-api, dispatcher-pairing); any other name is the
// dispatcher. "dispatcher agent …", "dispatcher api …" and "dispatcher
// pairing …" select the other roles from the dispatcher.
//
// Main is the only place that turns an error into an exit code: commands
// return errors, and a *cmdutil.ExitError carries a specific code (2 for
// usage mistakes). Nothing here calls os.Exit, so every command can be run
// in a test through NewApp.
package roles
