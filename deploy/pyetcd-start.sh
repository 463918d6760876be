#!/usr/bin/env bash
# pyetcd-start: start one pyetcd member from ETCD_* variables (etcd's names).
#
# The one start-up script of the deploy kit. It is the container image's
# ENTRYPOINT, the ExecStart of the Vagrant VMs' systemd unit, and what
# tests/deploy runs on its network-namespace hosts. Arguments are pyetcd flags
# and are passed on unchanged. Before exec'ing pyetcd it:
#
#  1. treats an empty ETCD_* variable as unset: `docker run -e ETCD_X=` is the
#     only way to remove a variable baked into an image, and etcd (so pyetcd)
#     refuses a flag given both as an argument and as a variable, even empty;
#  2. drops ETCD_<FLAG> when --<flag> is among the arguments, so an operator's
#     flag overrides a baked-in variable instead of stopping the member;
#  3. fills in the member's own URLs when they are not given, from its
#     ETCD_NAME entry in ETCD_INITIAL_CLUSTER (see deploy/members.env):
#       ETCD_LISTEN_PEER_URLS, ETCD_INITIAL_ADVERTISE_PEER_URLS = that entry,
#       ETCD_ADVERTISE_CLIENT_URLS = http://<its host>:$PYETCD_CLIENT_PORT,
#       ETCD_LISTEN_CLIENT_URLS    = the same plus http://127.0.0.1:<port>;
#  4. creates ETCD_DATA_DIR (any path: spaces, even a trailing one, are kept)
#     as the current user, mode 0700, and stops with one clear line when it
#     cannot be written;
#  5. execs pyetcd, which then receives SIGTERM directly (PID 1, systemd).
#
# A member whose data dir already holds a member restarts from it: pyetcd, like
# etcd, ignores --initial-cluster-state and the other --initial-* flags then.
set -euo pipefail

log() { printf 'pyetcd-start: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# ETCD_<FLAG> for a flag name: upper case, '-' -> '_' (etcd's rule).
env_name() {
	local flag=${1^^}
	printf 'ETCD_%s' "${flag//-/_}"
}

# 1. Empty means unset.
for var in $(compgen -e); do
	if [[ $var == ETCD_* && -z ${!var} ]]; then
		log "$var is empty: treating it as unset"
		unset "$var"
	fi
done

# 2. A flag in the arguments wins over the environment. Values of flags never
# start with '-' here, so only flag words are looked at; '--' ends the flags.
declare -A given=()
for arg in "$@"; do
	[[ $arg == -- ]] && break
	[[ $arg == -* ]] || continue
	flag=${arg#-}
	flag=${flag#-}
	var=$(env_name "${flag%%=*}")
	[[ $var =~ ^[A-Z0-9_]+$ ]] || continue
	given[$var]=1
	if [[ -n ${!var+set} ]]; then
		log "--${flag%%=*} is given: ignoring $var from the environment"
		unset "$var"
	fi
done

# Set variable $1 to $2 unless the environment or an argument already sets it.
default() {
	if [[ -z ${given[$1]:-} && -z ${!1:-} ]]; then
		export "$1=$2"
		log "$1=$2"
	fi
}

# 3. This member's URLs from its entry in the initial cluster.
if [[ -n ${ETCD_NAME:-} && -n ${ETCD_INITIAL_CLUSTER:-} ]]; then
	peer_urls=()
	IFS=, read -r -a entries <<<"$ETCD_INITIAL_CLUSTER"
	for entry in "${entries[@]}"; do
		[[ ${entry%%=*} == "$ETCD_NAME" ]] && peer_urls+=("${entry#*=}")
	done
	if ((${#peer_urls[@]} == 0)); then
		log "ETCD_NAME=$ETCD_NAME is not in ETCD_INITIAL_CLUSTER: URLs are not derived"
	else
		joined=$(IFS=,; printf '%s' "${peer_urls[*]}")
		host=${peer_urls[0]#*://}
		host=${host%:*}
		port=${PYETCD_CLIENT_PORT:-2379}
		default ETCD_INITIAL_ADVERTISE_PEER_URLS "$joined"
		default ETCD_LISTEN_PEER_URLS "$joined"
		default ETCD_ADVERTISE_CLIENT_URLS "http://$host:$port"
		default ETCD_LISTEN_CLIENT_URLS "http://$host:$port,http://127.0.0.1:$port"
	fi
fi

# 4. The data dir, owned and writable by whoever runs the member.
if [[ -n ${ETCD_DATA_DIR:-} ]]; then
	data_dir=$ETCD_DATA_DIR
	mkdir -p -- "$data_dir" 2>/dev/null ||
		die "cannot create data dir '$data_dir' as uid $(id -u)"
	[[ -w $data_dir && -x $data_dir ]] ||
		die "data dir '$data_dir' is not writable by uid $(id -u) (chown it or run as its owner)"
	if [[ -O $data_dir ]]; then
		chmod 700 -- "$data_dir"
	fi
	if [[ -d ${ETCD_WAL_DIR:-$data_dir/member/wal} ]]; then
		log "data dir '$data_dir' has a member: restarting it" \
			"(--initial-cluster-state ${ETCD_INITIAL_CLUSTER_STATE:-new} is ignored)"
	fi
fi

# 5. Become pyetcd.
command -v pyetcd >/dev/null || die "pyetcd is not on PATH ($PATH)"
log "starting $(command -v pyetcd) as uid $(id -u)"
exec pyetcd "$@"
