"""apt pointed at a cache by the apt_proxy role: used while it answers, direct downloads otherwise."""

from __future__ import annotations

from typing import Any

DETECT = "/usr/local/lib/kubelab/apt-proxy-detect"
URL = "http://127.0.0.1:3142"


def test_apt_asks_the_detect_script(host: Any) -> None:
    conf = host.file("/etc/apt/apt.conf.d/01kubelab-proxy")
    assert conf.mode == 0o644
    setting = f'Acquire::http::Proxy-Auto-Detect "{DETECT}";'
    assert setting in conf.content_string
    assert setting in host.check_output("apt-config dump Acquire::http::Proxy-Auto-Detect")  # apt reads it


def test_the_cache_is_named_only_while_it_answers(host: Any) -> None:
    assert host.file(DETECT).mode == 0o755
    assert host.check_output(DETECT) == "DIRECT"
    host.check_output("systemd-run --unit kubelab-fake-cache python3 -m http.server 3142 --bind 127.0.0.1")
    try:
        host.check_output("for i in $(seq 50); do bash -c 'exec 3<>/dev/tcp/127.0.0.1/3142' && break; sleep 0.1; done")
        assert host.check_output(DETECT) == URL
    finally:
        host.run("systemctl stop kubelab-fake-cache")
    assert host.check_output(DETECT) == "DIRECT"
