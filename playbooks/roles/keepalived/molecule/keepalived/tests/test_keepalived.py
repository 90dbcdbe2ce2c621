"""The keepalived role on two load-balancer nodes: kubelab's shipped checks, the lab's own secret, VIP failover."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from provisioner.checks import probes
from provisioner.checks.labfacts import LabFacts
from provisioner.checks.test_lb import test_keepalived_active, test_vip_on_exactly_one_node  # noqa: F401

VIP_MOVE_WAIT = 20.0  # seconds keepalived gets to move the VIP before the test fails


@pytest.mark.groups("lb")
def test_secret_per_lab_and_private(host: Any, lab: LabFacts) -> None:
    secret_file = lab.root / "secrets" / "keepalived-auth"
    secret = secret_file.read_text().strip()
    assert re.fullmatch(r"[A-Za-z0-9]{8}", secret)
    assert secret_file.stat().st_mode & 0o777 == 0o600 and secret_file.parent.stat().st_mode & 0o077 == 0
    config = host.file("/etc/keepalived/keepalived.conf")
    assert config.mode == 0o600
    assert f"auth_pass {secret}\n" in config.content_string


def _wait_for_holders(lab: LabFacts, nodes: dict[str, Any], expected: list[str]) -> list[str]:
    """Poll until the VIP sits exactly on `expected` (or the wait is over); returns the last holders seen."""
    deadline = time.monotonic() + VIP_MOVE_WAIT
    while True:
        holders = sorted(name for name, _ifname in probes.vip_holders(lab.vip, nodes))
        if holders == expected or time.monotonic() > deadline:
            return holders
        time.sleep(0.5)


def test_vip_moves_when_keepalived_or_haproxy_stops(lab: LabFacts, node_hosts: dict[str, Any]) -> None:
    lbs = {name: node_hosts[name] for name in ("lb-1", "lb-2")}
    first = lbs["lb-1"]
    assert _wait_for_holders(lab, lbs, ["lb-1"]) == ["lb-1"]  # the MASTER holds it
    try:
        for service in ("keepalived", "haproxy"):
            first.run(f"systemctl stop {service}")
            assert _wait_for_holders(lab, lbs, ["lb-2"]) == ["lb-2"], f"{service} stopped on lb-1"
            first.run(f"systemctl start {service}")
            assert _wait_for_holders(lab, lbs, ["lb-1"]) == ["lb-1"], f"{service} back on lb-1"  # higher priority
    finally:
        first.run("systemctl start keepalived haproxy")
