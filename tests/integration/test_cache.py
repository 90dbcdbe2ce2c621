"""The host's apt cache on real local nodes: the second lab's packages come from the cache, not the mirror,
and in offline mode a lab with its egress dropped still installs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hosttools import require_tools

from provisioner import cache

pytestmark = pytest.mark.integration

PACKAGE = "hello"  # small and not in the base root fs


def kubelab(lab, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "kubelab"), *args]
    return subprocess.run(command, env=lab.env, capture_output=True, text=True, timeout=60)


def point_at_cache(lab, work: Path, home: cache.CacheDir) -> str | None:
    url = cache.write_lab_vars(lab.lab, "local", lab.plan.spec.node_subnet, home)
    playbook = work / f"{lab.plan.spec.name}.yml"
    playbook.write_text("- hosts: k8s_cluster\n  become: true\n  roles:\n    - role: apt_proxy\n")
    result = lab.playbook(playbook)
    assert result.returncode == 0, result.stdout[-3000:]
    return url


def install(lab, node: str = "master-1", options: str = "") -> None:
    command = f"apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {options} {PACKAGE}"
    result = lab.ssh(node, command)
    assert result.returncode == 0, result.stderr[-2000:]
    assert lab.ssh(node, PACKAGE).stdout.strip() == "Hello, world!"


def deb_lines(home: cache.CacheDir, client: str, kind: str, skip: int = 0) -> list[int]:
    """Byte counts of the PACKAGE .deb in the cache's transfer log (from line `skip` on), for one client and
    I (fetched) or O (served)."""
    lines = home.transfer_log.read_text().splitlines()[skip:]
    return [
        int(p[2])
        for p in (line.split("|") for line in lines)
        if p[1] == kind and p[3] == client and f"/{PACKAGE}_" in p[4]
    ]


def egress(subnet: str, block: bool) -> None:
    """DROP (and count) every packet the lab's nodes send out through the host, or remove that rule again.

    Copies left by a killed earlier run are removed first, so the counter is this run's.
    """
    rule = ["FORWARD", "-s", subnet, "-m", "comment", "--comment", f"kubelab-it-cache-drop-{subnet}", "-j", "DROP"]
    while subprocess.run(["iptables", "-w", "-D", *rule], capture_output=True).returncode == 0:
        pass
    if block:
        subprocess.run(["iptables", "-w", "-I", rule[0], "1", *rule[1:]], check=True, capture_output=True)


def dropped_packets(subnet: str) -> int:
    listing = subprocess.run(["iptables", "-w", "-L", "FORWARD", "-v", "-x", "-n"], capture_output=True, text=True)
    (line,) = [line for line in listing.stdout.splitlines() if f"kubelab-it-cache-drop-{subnet}" in line]
    return int(line.split()[0])


def test_second_lab_is_served_from_the_cache(local_lab, tmp_path):
    require_tools("apt-cacher-ng", "iptables")
    first = local_lab(name="it-cache1", node_subnet="10.77.142.0/24", masters=1, workers=0)
    second = local_lab(name="it-cache2", node_subnet="10.77.143.0/24", masters=1, workers=0)
    home = cache.CacheDir(first.home / "cache" / "apt")  # the labs share one KUBELAB_HOME, as on a real host
    port = cache.free_port(31420)
    started = kubelab(first, "cache", "start", "--port", str(port))
    try:
        assert started.returncode == 0 and "apt cache: running" in started.stdout, started.stderr
        assert point_at_cache(first, tmp_path, home) == f"http://10.77.142.1:{port}"
        assert point_at_cache(second, tmp_path, home) == f"http://10.77.143.1:{port}"
        ip1, ip2 = first.plan.nodes[0].ip, second.plan.nodes[0].ip

        install(first)
        after_first = cache.transfers(home)
        assert deb_lines(home, ip1, "I") and deb_lines(home, ip1, "O")  # fetched from the mirror, then served

        install(second)
        from_second = cache.transfers(home, client=ip2)
        assert deb_lines(home, ip2, "O") and not deb_lines(home, ip2, "I")  # the .deb came from the cache
        assert from_second.served > 1_000_000  # the package lists too
        assert from_second.fetched < after_first.fetched / 20, (from_second, after_first)
        print(
            f"first lab fetched {after_first.fetched} bytes; second fetched {from_second.fetched}, "
            f"served {from_second.served}"
        )

        status = kubelab(first, "cache", "status")
        assert f"port {port}" in status.stdout and "fetched" in status.stdout

        # Offline mode: no internet for the cache, none for the lab; packages still come from the cache.
        offline = kubelab(first, "cache", "start", "--port", str(port), "--offline")
        assert offline.returncode == 0 and "offline" in offline.stdout, offline.stderr
        seen = len(home.transfer_log.read_text().splitlines())
        subnet = second.plan.spec.node_subnet
        try:
            egress(subnet, block=True)
            second.ssh("master-1", "apt-get clean", check=True)
            install(second, options="--reinstall")
            assert dropped_packets(subnet) == 0  # nothing tried to leave the lab
        finally:
            egress(subnet, block=False)
        assert deb_lines(home, ip2, "O", skip=seen)
        assert not [line for line in home.transfer_log.read_text().splitlines()[seen:] if "|I|" in line]
    finally:
        stopped = kubelab(first, "cache", "stop")
    assert stopped.returncode == 0 and "apt cache: stopped" in stopped.stdout
    # With the cache gone, nodes fall back to the mirror instead of failing.
    detect = second.ssh("master-1", "/usr/local/lib/kubelab/apt-proxy-detect")
    assert detect.stdout.strip() == "DIRECT"
    assert point_at_cache(second, tmp_path, home) is None
    assert second.ssh("master-1", "test -e /etc/apt/apt.conf.d/01kubelab-proxy").returncode == 1
