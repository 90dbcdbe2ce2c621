"""The haproxy role on a prepared load-balancer node: kubelab's shipped haproxy checks, and a config haproxy accepts."""

from __future__ import annotations

from typing import Any

import pytest

from provisioner.checks.labfacts import LabFacts
from provisioner.checks.test_lb import (  # noqa: F401 (collected here)
    test_haproxy_backends_are_all_masters,
    test_haproxy_listening,
)


@pytest.mark.groups("lb")
def test_haproxy_config_valid_and_running(host: Any, lab: LabFacts) -> None:
    check = host.run("haproxy -c -f /etc/haproxy/haproxy.cfg")
    assert check.rc == 0, check.stdout + check.stderr
    assert host.service("haproxy").is_running and host.service("haproxy").is_enabled
    config = host.file("/etc/haproxy/haproxy.cfg").content_string
    servers = sorted(line.strip() for line in config.splitlines() if line.strip().startswith("server "))
    assert servers == sorted(f"server {name} {ip}:6443 check" for name, ip in lab.masters.items())
