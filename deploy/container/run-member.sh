#!/usr/bin/env bash
# Run one pyetcd member container on this host, for three members on three hosts.
#
#   deploy/container/run-member.sh infra1      # on the host that owns 172.16.10.2
#   deploy/container/run-member.sh infra2      # on 172.16.13.2
#   deploy/container/run-member.sh infra3      # on 172.16.20.2
#
# The container uses the host's network (its address must be the member's address
# in ETCD_INITIAL_CLUSTER, deploy/members.env) and a named volume for its data.
# Extra arguments are pyetcd flags (they override the image's ETCD_* variables).
#
# Environment: CONTAINER_RUNTIME (docker or podman; default: whichever is
# installed, docker first), PYETCD_IMAGE (default pyetcd:latest).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
members_env="$here/../members.env"

usage() {
	printf 'usage: %s NAME [pyetcd flags...]\n' "$0" >&2
	exit 2
}

(($# >= 1)) || usage
name=$1
shift
[[ $name =~ ^[A-Za-z0-9_.-]+$ ]] || usage

# shellcheck source=../members.env
. "$members_env"
if [[ ",$ETCD_INITIAL_CLUSTER" != *",$name="* ]]; then
	printf 'error: %s is not a member in %s\n' "$name" "$members_env" >&2
	exit 1
fi

runtime=${CONTAINER_RUNTIME:-}
if [[ -z $runtime ]]; then
	runtime=$(command -v docker || command -v podman || true)
	[[ -n $runtime ]] || {
		printf 'error: neither docker nor podman is installed\n' >&2
		exit 1
	}
fi

exec "$runtime" run --detach \
	--name "pyetcd-$name" \
	--hostname "$name" \
	--network host \
	--init \
	--restart unless-stopped \
	--env-file "$members_env" \
	--env "ETCD_NAME=$name" \
	--volume "pyetcd-$name-data:/var/lib/pyetcd" \
	"${PYETCD_IMAGE:-pyetcd:latest}" "$@"
