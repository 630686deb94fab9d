#!/bin/sh
# entrypoint-dispatcher.sh — start a dispatcher-side container: the HTTP
# API, the pairing listener, or any dispatcher command. docs/DOCKER.md.
#
# First start: writes dispatcher.conf from the example when it is missing,
# creates the CA (`dispatcher setup-ca`) when ca.crt is missing and the
# dispatcher's own certificate (`dispatcher setup-dispatcher --yes`) when
# dispatcher.crt is missing. Then it replaces itself with the role:
#
#   no arguments, DISPATCHER_ROLE=api (default)  dispatcher-api serve
#   no arguments, DISPATCHER_ROLE=pairing-mode   dispatcher pairing-mode
#                                                (interactive with -it;
#                                                otherwise it serves, and
#                                                list-requests / approve in
#                                                `docker exec` decide)
#   no arguments, DISPATCHER_ROLE=setup          stop after the set-up
#   arguments                                    dispatcher ARGUMENTS, e.g.
#                                                `list-agents`, `run web-01 uptime`
#
# Nothing here needs Docker: with the paths below pointed elsewhere it runs
# on any host that has dispatcher on its PATH.
#
# Environment (all optional):
#
#   DISPATCHER_ROLE       api (default), pairing-mode or setup; ignored when
#                         arguments are given.
#   DISPATCHER_CONFIG     dispatcher.conf (default
#                         /etc/dispatcher/dispatcher.conf). The binary reads
#                         this variable too, so `docker exec` commands find
#                         the same file.
#   DISPATCHER_DIR        directory of the CA and the dispatcher's identity
#                         for a created dispatcher.conf (a volume; default
#                         /etc/dispatcher).
#   DISPATCHER_STATE_DIR  state_dir for a created dispatcher.conf: registry,
#                         pairing queue, runs (a volume; default
#                         /var/lib/dispatcher).
#   DISPATCHER_EXAMPLES   directory with the example dispatcher.conf copied
#                         when it is missing (default
#                         /usr/share/dispatcher/examples).
#   DISPATCHER_API_BIND   api_bind for a created dispatcher.conf (default
#                         "": all addresses, so the published port works;
#                         the API still denies everything until an
#                         auth_hook or api_auth_default says otherwise).
#   DISPATCHER_CA_CN      common name of a new CA (setup-ca --cn).
#   DISPATCHER_DNS_NAMES  names and addresses for a new dispatcher
#                         certificate, separated by commas or spaces
#                         (setup-dispatcher --dns-name each; default: the
#                         container's host name).
#   DISPATCHER_SKIP_SETUP 1: never create anything; fail as the command would.

set -eu

config=${DISPATCHER_CONFIG:-/etc/dispatcher/dispatcher.conf}
dir=${DISPATCHER_DIR:-/etc/dispatcher}
state_dir=${DISPATCHER_STATE_DIR:-/var/lib/dispatcher}
examples=${DISPATCHER_EXAMPLES:-/usr/share/dispatcher/examples}
export DISPATCHER_CONFIG="$config"

log() {
	printf 'entrypoint-dispatcher: %s\n' "$*" >&2
}

die() {
	log "$*"
	exit 1
}

# toml_string VALUE: VALUE as a TOML basic string.
toml_string() {
	printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"
}

write_config() {
	[ -r "$examples/dispatcher.conf" ] || die "no $config, and no example at $examples/dispatcher.conf to start from (set DISPATCHER_EXAMPLES or provide dispatcher.conf)"
	mkdir -p "$(dirname "$config")"
	tmp="$config.tmp.$$"
	{
		echo "# Written by entrypoint-dispatcher.sh on first start; the commented"
		echo "# example below lists every other key. docs/CONFIG.md."
		echo "cert = $(toml_string "$dir/dispatcher.crt")"
		echo "key = $(toml_string "$dir/dispatcher.key")"
		echo "ca = $(toml_string "$dir/ca.crt")"
		echo "ca_key = $(toml_string "$dir/ca.key")"
		echo "state_dir = $(toml_string "$state_dir")"
		echo "api_bind = $(toml_string "${DISPATCHER_API_BIND:-}")"
		echo "# containers log to stderr: docker logs"
		echo "log = \"stderr\""
		echo
		cat "$examples/dispatcher.conf"
	} >"$tmp"
	chmod 0640 "$tmp"
	mv "$tmp" "$config"
	log "wrote $config"
}

# conf_path KEY DEFAULT: the path KEY names in dispatcher.conf (a plain
# `key = "value"` line), else DEFAULT.
conf_path() {
	v=$(sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"\\([^\"]*\\)\".*/\\1/p" "$config" | tail -n 1)
	printf '%s' "${v:-$2}"
}

setup() {
	[ -e "$config" ] || write_config
	ca=$(conf_path ca /etc/dispatcher/ca.crt)
	cert=$(conf_path cert /etc/dispatcher/dispatcher.crt)
	if [ ! -e "$ca" ]; then
		if [ -n "${DISPATCHER_CA_CN:-}" ]; then
			dispatcher setup-ca --config "$config" --cn "$DISPATCHER_CA_CN"
		else
			dispatcher setup-ca --config "$config"
		fi
		log "created the CA: $ca"
	fi
	if [ ! -e "$cert" ]; then
		set --
		for n in $(printf '%s' "${DISPATCHER_DNS_NAMES:-}" | tr ',' ' '); do
			set -- "$@" --dns-name "$n"
		done
		dispatcher setup-dispatcher --yes --config "$config" "$@"
		log "created the dispatcher certificate: $cert"
	fi
}

if [ "${DISPATCHER_SKIP_SETUP:-0}" != 1 ]; then
	setup
fi

if [ "$#" -gt 0 ]; then
	exec dispatcher "$@"
fi

case ${DISPATCHER_ROLE:-api} in
api) exec dispatcher api serve --config "$config" ;;
pairing-mode | pairing) exec dispatcher pairing-mode --config "$config" ;;
setup) log "set-up done" ;;
*) die "unknown DISPATCHER_ROLE '${DISPATCHER_ROLE}': use api, pairing-mode or setup, or pass a dispatcher command as arguments" ;;
esac
