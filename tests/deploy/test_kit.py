"""The deploy kit's files: lint, validation and agreement with deploy/members.env.

shellcheck and vagrant are Debian packages; on a fresh (root) CI machine the tests
install them with apt (shellcheck ~10 s, vagrant without recommends ~20 s) and
skip, saying why, only when that is impossible.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .kit import (
    CONTAINERFILE,
    DEPLOY,
    MEMBERS_ENV,
    START_SCRIPT,
    compose,
    ensure_tool,
    image_env,
    members,
    read_env_file,
    scripts,
)

VAGRANT_DIR = DEPLOY / "vagrant"


def test_every_script_is_found() -> None:
    names = {p.relative_to(DEPLOY).as_posix() for p in scripts()}
    assert names >= {"pyetcd-start.sh", "container/run-member.sh", "vagrant/provision.sh"}
    for path in scripts():
        assert os.access(path, os.X_OK), f"{path} is not executable"


def test_shellcheck_passes_on_every_script() -> None:
    shellcheck, why = ensure_tool("shellcheck", "shellcheck")
    if shellcheck is None:
        pytest.skip(why)
    # -x follows `. members.env`, resolved from each script's own directory.
    argv = [shellcheck, "--external-sources", "--source-path=SCRIPTDIR", "--severity=style"]
    proc = subprocess.run([*argv, *map(str, scripts())], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_vagrant_validate(tmp_path: Path) -> None:
    vagrant, why = ensure_tool("vagrant", "vagrant")
    if vagrant is None:
        pytest.skip(why)
    # Keep vagrant's state out of the tree and out of $HOME.
    env = {
        **os.environ,
        "VAGRANT_DOTFILE_PATH": str(tmp_path / "dot"),
        "VAGRANT_HOME": str(tmp_path / "home"),
        "VAGRANT_CHECKPOINT_DISABLE": "1",
    }

    def validate(*opts: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [vagrant, "validate", *opts],
            cwd=VAGRANT_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    proc = validate()
    if proc.returncode != 0 and "No usable default provider" in proc.stderr + proc.stdout:
        # Debian's vagrant without a hypervisor: validate everything but the provider
        # blocks; vagrant then names each machine it validated.
        proc = validate("--ignore-provider")
        machines = re.findall(r"==> (\S+): Ignoring provider config", proc.stdout)
        assert machines == [m.name for m in members()], proc.stdout
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "validated successfully" in proc.stdout
    assert not (VAGRANT_DIR / ".vagrant").exists()


def test_vagrantfile_reads_the_members_file() -> None:
    lines = (VAGRANT_DIR / "Vagrantfile").read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    assert '"../members.env"' in text
    # No address or member name is restated in its code.
    for m in members():
        assert m.ip not in text and f'"{m.name}"' not in text


def test_members_env_reads_the_same_in_bash_and_as_env_file() -> None:
    """Sourced by bash (provisioner), read by systemd/docker/compose: the same values."""
    declared = read_env_file(MEMBERS_ENV)
    out = subprocess.run(
        ["bash", "-c", 'set -a; . "$1"; env -0', "bash", str(MEMBERS_ENV)],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    sourced = dict(item.split("=", 1) for item in out.split("\0") if "=" in item)
    for key, value in declared.items():
        assert sourced[key] == value, key
        # systemd's EnvironmentFile would strip quotes and trim spaces.
        assert not re.search(r"[\s'\"$`\\]", value), f"{key} needs quoting: {value!r}"
    network = ipaddress.ip_network(declared["PYETCD_NETWORK"])
    for m in members():
        assert ipaddress.ip_address(m.ip) in network, m


def test_compose_services_are_the_declared_members() -> None:
    doc = compose()
    services = doc["services"]
    assert list(services) == [m.name for m in members()]
    (network,) = doc["networks"]
    subnet = doc["networks"][network]["ipam"]["config"][0]["subnet"]
    assert subnet == read_env_file(MEMBERS_ENV)["PYETCD_NETWORK"]
    data_dir = image_env()["ETCD_DATA_DIR"]
    for m in members():
        svc = services[m.name]
        assert svc["networks"][network]["ipv4_address"] == m.ip
        assert svc["environment"] == {"ETCD_NAME": m.name}
        assert svc["env_file"] == "../members.env"
        (volume,) = svc["volumes"]
        assert volume == f"{m.name}-data:{data_dir}"
        assert volume.split(":")[0] in doc["volumes"]
        assert svc["build"]["dockerfile"] == "deploy/container/Containerfile"


def _instructions() -> list[tuple[str, str]]:
    text = CONTAINERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            op, _, rest = line.strip().partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def test_containerfile() -> None:
    ins = _instructions()
    assert ins[0] == ("FROM", "python:3.11-slim")
    by_op: dict[str, list[str]] = {}
    for op, rest in ins:
        by_op.setdefault(op, []).append(rest)
    assert any("pip install" in r and "/tmp/pyetcd-src" in r for r in by_op["RUN"])
    copies = " ".join(by_op["COPY"])
    assert "deploy/pyetcd-start.sh /usr/local/bin/pyetcd-start" in copies
    assert by_op["ENTRYPOINT"] == ['["/usr/local/bin/pyetcd-start"]']
    (user,) = by_op["USER"]
    assert user.split(":")[0] not in ("0", "root")
    assert by_op["VOLUME"] == [f'["{image_env()["ETCD_DATA_DIR"]}"]']
    # The user owns the data dir it will find in a fresh volume.
    assert any(f"-o {user.split(':')[0]}" in r and "/var/lib/pyetcd" in r for r in by_op["RUN"])
    # Everything COPY'd exists in the build context (the project root).
    root = DEPLOY.parent
    for rest in by_op["COPY"]:
        sources = [w for w in rest.split() if not w.startswith("--")][:-1]
        for src in sources:
            assert (root / src).exists(), src


def test_containerfile_builds_when_an_engine_runs() -> None:
    """Only where a container engine works (not on the dev/CI machines, which lack one)."""
    engine = shutil.which("podman") or shutil.which("docker")
    if engine is None:
        pytest.skip("no container engine installed")
    if subprocess.run([engine, "info"], capture_output=True, timeout=30).returncode != 0:
        pytest.skip(f"{engine} is installed but no engine answers ({engine} info fails)")
    build = [engine, "build", "-f", str(CONTAINERFILE), "-t", "pyetcd:test", str(DEPLOY.parent)]
    proc = subprocess.run(build, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_start_script_is_what_both_deployments_run() -> None:
    provision = (VAGRANT_DIR / "provision.sh").read_text()
    assert re.search(r'install -m 0755 "\$project/deploy/pyetcd-start.sh" '
                     r"/usr/local/bin/pyetcd-start\n", provision)  # fmt: skip
    assert "ExecStart=/usr/local/bin/pyetcd-start" in provision
    assert START_SCRIPT.read_text().startswith("#!/usr/bin/env bash\n")
