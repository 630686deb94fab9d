#!/bin/sh
# entrypoint-agent.sh — start a dispatcher agent in a container: pair with
# the dispatcher on the first start, then serve. docs/DOCKER.md.
#
# First start (no valid certificate: `dispatcher-agent pairing-status` exits
# 1): writes agent.conf and scripts.conf from the examples when they are
# missing, then runs `dispatcher-agent request-pairing` in the foreground.
# It prints a request id and a 6-digit pairing code (see `docker logs`) and
# waits for the dispatcher to approve; check that the dispatcher shows the
# same code before approving. Denied or unanswered: the script exits with
# request-pairing's status (3 denied, 2 no answer in time, 1 other) and the
# container stops. Approved, and on every later start: it replaces itself
# with `dispatcher-agent serve` (so signals reach the agent directly).
#
# Nothing here needs Docker: with the paths below pointed elsewhere it runs
# on any host that has dispatcher-agent on its PATH (the tests do that).
#
# Environment (all optional except DISPATCHER_HOST on the first start):
#
#   DISPATCHER_HOST            the dispatcher to pair with: host, address or
#                              host:port of its pairing listener. Required
#                              while the agent is not paired; unused after.
#   DISPATCHER_PAIRING_PORT    its pairing port (request-pairing --port;
#                              default: pairing_port of agent.conf, 7444).
#   DISPATCHER_CA_FINGERPRINT  sha256:HEX of the dispatcher CA's public key
#                              (request-pairing --ca-fingerprint): pair only
#                              with that dispatcher. Printed by
#                              `dispatcher pairing-mode` when it starts.
#   AGENT_HOSTNAME             the name to pair under and answer to
#                              (request-pairing --hostname). Written into a
#                              newly created agent.conf as hostname; with an
#                              existing agent.conf, keep its hostname equal.
#                              Default: hostname of agent.conf, else the
#                              container's host name (docker run --hostname).
#   AGENT_PAIRING_TIMEOUT      seconds to wait for the approval, 1-600
#                              (request-pairing --timeout; default 600).
#   AGENT_DIR                  the agent's configuration and identity
#                              directory (a volume; default
#                              /etc/dispatcher-agent). A created agent.conf
#                              keeps cert, key, ca, revoked_serials and
#                              dispatcher_serial_path in it.
#   AGENT_CONFIG               agent.conf (default $AGENT_DIR/agent.conf).
#   AGENT_ALLOWLIST            scripts.conf (default $AGENT_DIR/scripts.conf).
#   AGENT_EXAMPLES             directory with the example agent.conf and
#                              scripts.conf copied when those are missing
#                              (default /usr/share/dispatcher/examples).
#   AGENT_PORT                 port for a created agent.conf (default 7443).
#   AGENT_BIND                 listen address for a created agent.conf
#                              (default: all addresses).
#
# Arguments, if any, are appended to `dispatcher-agent serve`.

set -eu

agent_dir=${AGENT_DIR:-/etc/dispatcher-agent}
config=${AGENT_CONFIG:-$agent_dir/agent.conf}
allowlist=${AGENT_ALLOWLIST:-$agent_dir/scripts.conf}
examples=${AGENT_EXAMPLES:-/usr/share/dispatcher/examples}

log() {
	printf 'entrypoint-agent: %s\n' "$*" >&2
}

die() {
	log "$*"
	exit 1
}

# toml_string VALUE: VALUE as a TOML basic string.
toml_string() {
	printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"
}

# The generated keys come first: the example ends inside a [tags] table.
write_agent_conf() {
	[ -r "$examples/agent.conf" ] || die "no $config, and no example at $examples/agent.conf to start from (set AGENT_EXAMPLES or provide agent.conf)"
	tmp="$config.tmp.$$"
	{
		echo "# Written by entrypoint-agent.sh on first start; the commented"
		echo "# example below lists every other key. docs/CONFIG.md."
		if [ -n "${AGENT_HOSTNAME:-}" ]; then
			echo "hostname = $(toml_string "$AGENT_HOSTNAME")"
		fi
		if [ -n "${AGENT_PORT:-}" ]; then
			echo "port = $AGENT_PORT"
		fi
		if [ -n "${AGENT_BIND:-}" ]; then
			echo "bind = $(toml_string "$AGENT_BIND")"
		fi
		echo "cert = $(toml_string "$agent_dir/agent.crt")"
		echo "key = $(toml_string "$agent_dir/agent.key")"
		echo "ca = $(toml_string "$agent_dir/ca.crt")"
		echo "revoked_serials = $(toml_string "$agent_dir/revoked-serials")"
		echo "dispatcher_serial_path = $(toml_string "$agent_dir/dispatcher-serial")"
		echo "# containers log to stderr: docker logs"
		echo "log = \"stderr\""
		echo
		cat "$examples/agent.conf"
	} >"$tmp"
	chmod 0640 "$tmp"
	mv "$tmp" "$config"
	log "wrote $config"
}

write_scripts_conf() {
	[ -r "$examples/scripts.conf" ] || die "no $allowlist, and no example at $examples/scripts.conf to start from (set AGENT_EXAMPLES or provide scripts.conf)"
	tmp="$allowlist.tmp.$$"
	cp "$examples/scripts.conf" "$tmp"
	chmod 0640 "$tmp"
	mv "$tmp" "$allowlist"
	log "wrote $allowlist from the example: edit it to list your scripts"
}

mkdir -p "$agent_dir" "$(dirname "$config")" "$(dirname "$allowlist")"
[ -e "$config" ] || write_agent_conf
[ -e "$allowlist" ] || write_scripts_conf

# pair: request-pairing in the foreground; its exit status is ours.
pair() {
	[ -n "${DISPATCHER_HOST:-}" ] || die "not paired, and DISPATCHER_HOST is not set: set it to the dispatcher's pairing address (docs/DOCKER.md)"
	set -- --dispatcher "$DISPATCHER_HOST" --config "$config" --allowlist "$allowlist"
	if [ -n "${DISPATCHER_PAIRING_PORT:-}" ]; then
		set -- "$@" --port "$DISPATCHER_PAIRING_PORT"
	fi
	if [ -n "${AGENT_HOSTNAME:-}" ]; then
		set -- "$@" --hostname "$AGENT_HOSTNAME"
	fi
	if [ -n "${DISPATCHER_CA_FINGERPRINT:-}" ]; then
		set -- "$@" --ca-fingerprint "$DISPATCHER_CA_FINGERPRINT"
	fi
	if [ -n "${AGENT_PAIRING_TIMEOUT:-}" ]; then
		set -- "$@" --timeout "$AGENT_PAIRING_TIMEOUT"
	fi
	log "not paired: asking $DISPATCHER_HOST; approve on the dispatcher only if it shows the code below"
	rc=0
	dispatcher-agent request-pairing "$@" || rc=$?
	if [ "$rc" -ne 0 ]; then
		case $rc in
		2) log "no answer in time: start pairing-mode on the dispatcher and approve, then restart this container" ;;
		3) log "the dispatcher denied the request" ;;
		*) log "pairing failed (exit $rc)" ;;
		esac
		exit "$rc"
	fi
	log "paired"
}

status=0
dispatcher-agent pairing-status --config "$config" --allowlist "$allowlist" || status=$?
case $status in
0) log "already paired: serving" ;;
1) pair ;;
*) die "dispatcher-agent pairing-status failed (exit $status): fix the configuration" ;;
esac

exec dispatcher-agent serve --config "$config" --allowlist "$allowlist" "$@"
