// Package httplimit holds the limits the control host's HTTP listeners
// (the API on 7445, pairing on 7444) share against clients that hold
// resources: a [Listener] that bounds the connections open at once,
// [HeaderLines] to count a request's header lines, and [CleanPath] to
// refuse paths with empty, "." or ".." segments. It has no errors of its
// own: Listener's are those of the listener it wraps, or net.ErrClosed.
package httplimit
