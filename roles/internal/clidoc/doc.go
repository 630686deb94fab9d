// Package clidoc generates shell completion scripts and man pages from a
// *cli.App, so that what the shell offers and what the manual says are
// always the commands and flags the binary really has.
//
// It walks the app's command tree itself ([Walk]) instead of using
// urfave/cli's own generators: hidden commands and flags are left out, the
// help command and --help are handled the same way for every role, and the
// output depends only on the app, never on the environment (the man page's
// date and version come from [ManOptions]).
//
// [Bash] writes a bash script for "complete -F", [Zsh] a #compdef file for a
// directory in $fpath, [Man] a man(7) page in roff. [Commands] returns a
// "completion bash|zsh" command and a hidden "man" command that write them
// for the app they are part of, so each role's binary name completes its own
// commands.
//
// Errors are those of the io.Writer; an unknown shell is a usage error.
package clidoc
