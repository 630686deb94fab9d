// Package control is what the control host does, shared by the dispatcher
// CLI, the API and the pairing listener: today the CA and dispatcher
// identity set-up; fan-out, approval, renewal, rotation, revocation and
// locks join it as those features land.
//
// Functions take plain values (paths, durations, a *zap.Logger) and never
// see CLI flags or TOML. Errors are lowercase and wrapped; callers branch on
// *ExistsError (material already present, nothing was changed) and
// *MissingCAError (no CA to sign with).
package control
