"""The host's apt cache without starting it: transfer log totals, proxy URLs, lab vars, refused ports, config."""

from __future__ import annotations

import socket

import pytest

from provisioner import cache
from provisioner.cache import CacheDir, CacheError
from provisioner.lab import LabDir

LOG = """\
1795429800|I|151293|10.77.142.21|deb.debian.org/debian/dists/bookworm/InRelease
1795429800|O|151293|10.77.142.21|deb.debian.org/debian/dists/bookworm/InRelease
1795429801|I|53313|10.77.142.21|deb.debian.org/debian/pool/main/h/hello/hello_2.10-3_amd64.deb
1795429801|O|53313|10.77.142.21|deb.debian.org/debian/pool/main/h/hello/hello_2.10-3_amd64.deb
1795429900|O|53313|10.77.143.21|deb.debian.org/debian/pool/main/h/hello/hello_2.10-3_amd64.deb
not a transfer line
1795429901|E|0|10.77.143.21|deb.debian.org/debian/pool/main/x/missing.deb
"""


@pytest.fixture
def home(tmp_path) -> CacheDir:
    found = CacheDir(tmp_path / "cache" / "apt")
    found.logs.mkdir(parents=True)
    found.transfer_log.write_text(LOG)
    return found


def test_transfers_add_up_fetched_and_served_bytes_per_client_and_period(home):
    assert cache.transfers(home) == cache.Transfers(fetched=151293 + 53313, served=151293 + 2 * 53313, requests=3)
    assert cache.transfers(home, client="10.77.143.21") == cache.Transfers(fetched=0, served=53313, requests=1)
    assert cache.transfers(home, since=1795429850).served == 53313
    assert cache.transfers(CacheDir(home.root / "nowhere")) == cache.Transfers()


def test_nodes_reach_the_cache_on_the_hosts_subnet_address():
    assert cache.proxy_url("local", "10.77.142.0/24", 3142) == "http://10.77.142.1:3142"
    assert cache.proxy_url("libvirt", "192.168.56.0/24", 31420) == "http://192.168.56.1:31420"
    assert cache.proxy_url("hosts", "10.0.0.0/24", 3142) is None


def test_lab_vars_say_null_while_the_cache_is_not_running(home, tmp_path):
    lab = LabDir(tmp_path / "labs" / "x")
    home.port_file.write_text("3142\n")
    assert cache.write_lab_vars(lab, "local", "10.77.142.0/24", home) is None
    assert (lab.inventory_dir / "group_vars" / "all" / "cache.yml").read_text().endswith("kubelab_apt_proxy: null\n")


def test_unusable_ports_are_refused_before_anything_starts(home):
    with pytest.raises(CacheError, match=r"takes ports 1-32767: use e\.g\. 3142"):
        cache.start(40000, home)
    port = next(p for p in range(31620, 31720) if not cache._answers(p))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        with pytest.raises(CacheError, match=f"port {port} is taken .* --port {port + 1}"):
            cache.start(port, home)
    assert not home.conf.exists() and cache.status(home).running is False


def test_offline_mode_is_in_the_config_and_the_status(home):
    home.conf.mkdir(parents=True)
    home.config_file.write_text(cache._config(home, 3142, offline=True))
    assert cache.is_offline(home)
    home.config_file.write_text(cache._config(home, 3142, offline=False))
    assert not cache.is_offline(home) and "Port: 3142" in home.config_file.read_text()
    state = cache.CacheStatus(True, 42, 3142, 5_000_000, cache.Transfers(1, 2, 3), offline=True)
    assert cache.describe(state, home).splitlines()[0] == (
        "apt cache: running (pid 42, port 3142, offline: serves only what it has cached)"
    )


def test_free_port_skips_a_port_in_use_and_says_when_none_is_left() -> None:
    port = cache.free_port(30500, 200)
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", port))
        taken.listen()
        with pytest.raises(CacheError, match=f"no free port in {port}-{port}"):
            cache.free_port(port, 1)
        assert cache.free_port(port, 200) > port
