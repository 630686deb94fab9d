// Package output prints what the dispatcher CLI shows people and scripts
// (SPEC §6): aligned tables ([Table]), the per-host blocks of run
// ([WriteRunResult]), JSON ([WriteJSON]), the live progress line of long
// fan-outs on a terminal ([Progress]) and --stream's host-prefixed lines
// ([Streamer]). It formats; it never decides what to run or how to exit.
//
// Human run output, per host in the order given:
//
//	==> web-01  [OK  exit:0  12ms]
//	stdout exactly as the script wrote it
//	STDERR: each stderr line, prefixed
//	==> web-02  [FAIL  exit:-1  3001ms]
//	ERROR: connect timeout after 3s
//
// Streamed lines (--stream) are "HOST: line" for stdout and
// "HOST [stderr]: line" for stderr, whole lines only, as they arrive.
//
// Writers are the CLI's stdout and stderr; write errors are returned
// (a closed pipe ends the command).
package output
