// Package config loads, defaults and validates the files that configure
// dispatcher: dispatcher.conf ([Dispatcher], read by the dispatcher, api and
// pairing roles), agent.conf ([Agent]) and scripts.conf (a list of
// [Script], the agent's allowlist). Every key, its type and default are in
// docs/CONFIG.md. Cores never see this package: roles copy the plain values
// they need out of the structs.
//
//	cfg, err := config.LoadAgent(path, log, nil)
//	if errors.Is(err, fs.ErrNotExist) && !explicit {
//		cfg, err = config.DefaultAgent(), nil
//	}
//
// # Values
//
// [Duration] values are an integer number of seconds (60, or "60") or a Go
// duration string ("90s", "24h"). [Size] values are an integer number of
// bytes or a string with a binary suffix K, KiB, M, MiB, G or GiB ("16MiB").
// [RateLimit] values are "limit/window/block" ("10/60/300", seconds).
// Lists (allowed_ips, script_dirs) are one separated string or, in TOML, an
// array of strings.
//
// # Errors and warnings
//
// A file that cannot be read is returned as the *fs.PathError, so that
// errors.Is(err, fs.ErrNotExist) tells a missing file; callers decide
// whether defaults do (the CLI uses them when the default path is absent).
// Every other problem that stops loading — a syntax error, a value of the
// wrong type, a bad value, a missing required key, a key set twice through
// an alias — is an [*Error] naming file, line and key:
//
//	/etc/dispatcher/dispatcher.conf:7: key "api_port": must be 1-65535, got 70000
//
// Validate on a struct built in code returns the same type with only Key
// set. Problems that do not stop loading — an unknown key, the legacy
// format, a repeated legacy key, a skipped scripts.conf entry — are
// [Warning] values: each is logged at warn level as a "config-warn" event
// with the fields file, line, key and reason, and also returned (in the
// Warnings field, or by [LoadScripts]).
//
// # Legacy format
//
// Files written for the Perl dispatcher are lines of key = value with
// unquoted values, whole-line # comments, trailing comments (a # after a
// space or tab), blank lines and [section] headers (agent.conf has [tags]);
// scripts.conf holds name = /abs/path lines. Such a file is detected
// automatically:
//
//  1. The file is parsed as TOML. If that succeeds, it is TOML.
//  2. Otherwise, if some value starts with ", ', [ or { (or some line is an
//     [[array]] header or the continuation of a multi-line value), the file
//     was meant as TOML and the TOML syntax error is reported. A [name]
//     header on its own line does not count.
//  3. Otherwise the file is read in the legacy format, and one warning is
//     logged for the file suggesting the TOML form.
//
// A legacy file whose lines are neither key = value, [section] nor
// comments is an error naming the line. Legacy keys and section names are
// letters, digits, '_', '.' and '-'. Legacy values go through the same
// typing and validation as TOML values, read from their text: port = abc is
// an error naming file, line and key; booleans may also be yes/no, on/off
// or 1/0. A key repeated in a legacy config file is a warning and the later
// value wins, as it did in the Perl dispatcher; a script name repeated in a
// legacy scripts.conf keeps the first entry.
//
// # Log output
//
// An empty log setting means "syslog when /dev/log exists, else stderr".
// It is resolved lazily by LogOutput, not at load, so that a loaded struct
// states only what the file said and the check happens when the logger is
// built.
package config
