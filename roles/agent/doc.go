// Package agent is the agent role (dispatcher-agent): the daemon that serves
// the operational protocol on 7443 and the agent's local commands. Its
// commands arrive with the operational path and pairing; until then the role
// only answers --version and --help.
package agent
