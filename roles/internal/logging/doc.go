// Package logging builds the *zap.Logger every role uses and fixes what an
// event line looks like (SPEC §10).
//
// New turns Options (the log and log_format config keys, plus the role's
// syslog tag) into a logger and a close function. Code that logs receives a
// *zap.Logger (nil means log nothing), narrows it with Named and With, and
// writes events with Event or EventLevel and one of the Action constants, so
// the action is always the message and the vocabulary stays fixed:
//
//	logging.Event(log, logging.ActionRun,
//		zap.String("reqid", id), zap.String("host", "web-01"),
//		zap.String("script", "deploy"), zap.Int("exit", 0),
//		zap.Duration("rtt", 12*time.Millisecond))
//
// # Line format
//
// The default "kv" format (NewKVEncoder) writes one line per event:
//
//	ACTION=run EXIT=0 HOST=web-01 LEVEL=info REQID=3f2a RTT=12ms SCRIPT=deploy TS=2025-05-01T12:00:00.123Z
//
// ACTION comes first; every other key — LEVEL, TS, LOGGER, CALLER, STACK and
// the fields, With fields included — is upper-cased and sorted. Key
// characters outside [A-Za-z0-9_.-] become '_'. A value is written as it is
// when it consists of letters, digits and -_.:/@+,%~^*!?()[]{} only, and
// quoted with strconv.Quote otherwise (any space, quote, '=', backslash,
// control character or invalid UTF-8), so one entry is always one line and a
// value cannot forge another key: a host name of "a\nACTION=evil" is written
// HOST="a\nACTION=evil". An empty value is KEY="". Errors are ERROR=<message>,
// durations Duration.String ("12ms"), times RFC 3339 with milliseconds in
// UTC (TimeLayout), arrays their elements joined by commas, objects
// flattened with dotted keys (TAGS.ROLE=web), byte strings as strings,
// binary as base64 and reflected values as JSON. When a key occurs twice the
// last one wins; a field named like one of the encoder's own keys (action,
// level, ts, logger, caller, stack) is written as FIELD_ACTION and so on.
//
// The "json" format (NewJSONEncoder) is zap's JSON encoder with the keys
// level, ts, logger, action (the message) and then the fields as given.
//
// # Redaction
//
// In both formats a field whose key is token, password, secret, key_pem or
// ends in _token (in any case, at any depth of an object) is written as
// [redacted]; see Sensitive. This is defence in depth: tokens and keys must
// still never be handed to a logger.
//
// # Outputs
//
// Output "syslog" sends each line to the local syslog with facility daemon,
// the role's tag and a severity from the level, without TS (syslog adds the
// time). "stderr" writes to Options.Stderr with TS. An absolute path appends
// to that file with TS, creating it with mode 0640. "" means syslog when
// /dev/log exists and stderr otherwise. If syslog cannot be reached New logs
// to stderr instead and writes one ACTION=log-fallback line there saying why.
//
// # Errors
//
// New fails only on configuration an operator must fix: an unknown format, a
// relative log path, or a log file that cannot be opened. Errors are
// lowercase and wrap the cause with %w. Event and EventLevel never fail;
// write errors are reported by zap on Options.Stderr.
package logging
