// Command dispatcher runs scripts on a fleet of agent hosts over mutual
// TLS. One binary carries every role: it is the control-host CLI when
// started as dispatcher, the agent daemon as dispatcher-agent, the HTTP API
// as dispatcher-api and the pairing listener as dispatcher-pairing (or with
// the subcommands "agent", "api" and "pairing").
package main
