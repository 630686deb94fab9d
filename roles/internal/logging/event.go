package logging

import (
	"runtime"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// The action vocabulary: the value of ACTION (kv) or action (json) on every
// event line. SPEC §10 names the first group; the second covers set-up and
// process life. Add a constant here, and to docs/LOGGING.md, before logging
// a new action.
const (
	ActionRun           = "run"
	ActionPing          = "ping"
	ActionDispatch      = "dispatch"
	ActionPairRequest   = "pair-request"
	ActionPairApprove   = "pair-approve"
	ActionPairDeny      = "pair-deny"
	ActionPairReject    = "pair-reject"
	ActionRenew         = "renew"
	ActionRenewComplete = "renew-complete"
	ActionUnpair        = "unpair"
	ActionRevoke        = "revoke"
	ActionAuthDeny      = "auth-deny"
	ActionAuthAllow     = "auth-allow" // debug level: the auth hook allowed
	ActionLockConflict  = "lock-conflict"
	ActionSerialReject  = "serial-reject"
	ActionKeyPin        = "key-pin"     // dispatcher: a Perl-paired agent's key pinned at its first contact
	ActionTagsUpdate    = "tags-update" // dispatcher: a registry record's tags refreshed from the agent's /capabilities
	ActionIPBlock       = "ip-block"
	ActionRateBlock     = "rate-block"
	ActionConfigWarn    = "config-warn"
	ActionReload        = "reload"
	ActionAPIRequest    = "api-request"

	ActionSetupCA         = "setup-ca"
	ActionSetupDispatcher = "setup-dispatcher"
	ActionRotateCert      = "rotate-cert"
	ActionDiscover        = "discover"
	ActionRunLost         = "run-lost"      // a run whose process died was marked lost
	ActionStoreMigrate    = "store-migrate" // a PostgreSQL schema migration was applied
	ActionStart           = "start"         // a daemon is serving
	ActionStop            = "stop"          // a daemon has shut down
	ActionLogFallback     = "log-fallback"  // syslog was unreachable, logging to stderr
)

// Actions returns the whole vocabulary, in the order of the constants.
func Actions() []string {
	return []string{
		ActionRun, ActionPing, ActionDispatch, ActionPairRequest,
		ActionPairApprove, ActionPairDeny, ActionPairReject, ActionRenew,
		ActionRenewComplete, ActionUnpair, ActionRevoke, ActionAuthDeny,
		ActionAuthAllow, ActionLockConflict, ActionSerialReject, ActionIPBlock, ActionRateBlock,
		ActionConfigWarn, ActionReload, ActionAPIRequest,
		ActionSetupCA, ActionSetupDispatcher, ActionRotateCert, ActionDiscover,
		ActionStart, ActionStop, ActionLogFallback,
	}
}

// Event logs one event line at info level: action becomes ACTION, fields the
// rest of the line. A nil logger logs nothing. When the logger reports
// callers (Options.Caller), CALLER is the code that called Event.
func Event(l *zap.Logger, action string, fields ...zap.Field) {
	event(l, zapcore.InfoLevel, action, fields)
}

// EventLevel is Event at level lvl (warn for refusals such as auth-deny or
// ip-block, error for failures). A nil logger logs nothing.
func EventLevel(l *zap.Logger, lvl zapcore.Level, action string, fields ...zap.Field) {
	event(l, lvl, action, fields)
}

// event is called directly by Event and EventLevel, so the caller of either
// is always two frames up.
func event(l *zap.Logger, lvl zapcore.Level, action string, fields []zap.Field) {
	if l == nil {
		return
	}
	ce := l.Check(lvl, action)
	if ce == nil {
		return
	}
	if ce.Caller.Defined {
		// zap recorded the frame that called Check (this package); report
		// the code that called Event or EventLevel instead.
		if pc, file, line, ok := runtime.Caller(2); ok {
			ce.Caller = zapcore.EntryCaller{Defined: true, PC: pc, File: file, Line: line}
			if fn := runtime.FuncForPC(pc); fn != nil {
				ce.Caller.Function = fn.Name()
			}
		}
	}
	ce.Write(fields...)
}
