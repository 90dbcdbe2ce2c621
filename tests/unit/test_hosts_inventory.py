"""The hosts provider's inventory: how the user's machines become lab nodes, and every mistake named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provisioner.providers.base import ProviderError
from provisioner.providers.hosts import inventory_counts, map_hosts

SUBNET = "10.77.124.0/24"


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "id_ed25519"
    path.write_text("not a real key\n")
    return path


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "inventory.yml"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def inventory(key: Path, masters: dict, workers: dict | None = None, lb: dict | None = None) -> dict:
    children: dict = {"masters": {"hosts": masters}, "workers": {"hosts": workers or {}}}
    if lb is not None:
        children["lb"] = {"hosts": lb}
    return {"all": {"vars": {"ansible_user": "debian", "ansible_ssh_private_key_file": str(key)}, "children": children}}


def test_hosts_become_nodes_in_order_with_their_addresses(tmp_path: Path, key: Path) -> None:
    data = inventory(
        key,
        {
            "cp-b": {"ansible_host": "203.0.113.5", "kubelab_ip": "10.77.124.50"},
            "cp-a": {"ansible_host": "10.77.124.7"},
        },
        {"w": {"ansible_host": "10.77.124.9", "ansible_port": 2222, "ansible_user": "root"}},
    )
    hosts = map_hosts(write(tmp_path, data), SUBNET, vip="10.77.124.10", lb_nodes=0)
    assert [(h.inventory_name, h.node, h.ip) for h in hosts] == [
        ("cp-b", "master-1", "10.77.124.50"),
        ("cp-a", "master-2", "10.77.124.7"),
        ("w", "worker-1", "10.77.124.9"),
    ]
    assert (hosts[0].connection.host, hosts[0].connection.user) == ("203.0.113.5", "debian")
    assert (hosts[2].connection.port, hosts[2].connection.user) == (2222, "root")
    assert inventory_counts(write(tmp_path, data)) == {"masters": 2, "workers": 1}


def test_the_users_ssh_arguments_come_before_kubelabs_defaults(tmp_path: Path, key: Path) -> None:
    args = "-o StrictHostKeyChecking=yes -o UserKnownHostsFile='/tmp/my hosts'"
    data = inventory(key, {"cp": {"ansible_host": "10.77.124.7", "ansible_ssh_common_args": args}})
    (host,) = map_hosts(write(tmp_path, data), SUBNET, vip=None, lb_nodes=0)
    argv = host.connection.ssh_argv(["true"])
    assert argv.index("StrictHostKeyChecking=yes") < argv.index("-oStrictHostKeyChecking=accept-new")
    assert "UserKnownHostsFile=/tmp/my hosts" in argv


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["all"]["children"].update(etcd={"hosts": {}}),
            "unknown group(s) etcd; use lb, masters and workers",
        ),
        (lambda d: d["all"]["children"].update(masters={"hosts": {}}), "the group 'masters' has no hosts"),
        (lambda d: d["all"]["vars"].pop("ansible_user"), "host cp needs ansible_user and ansible_ssh_private_key_file"),
        (lambda d: d["all"]["vars"].update(ansible_ssh_private_key_file="/nonexistent/key"), "does not exist"),
        (
            lambda d: d["all"]["children"]["masters"]["hosts"]["cp"].update(kubelab_ip="10.1.2.3"),
            "outside --node-subnet",
        ),
        (lambda d: d["all"]["children"]["masters"]["hosts"]["cp"].update(kubelab_ip="cp.example"), "not an IPv4"),
        (lambda d: d["all"]["children"]["masters"]["hosts"]["cp"].update(kubelab_ip="10.77.124.10"), "has the VIP"),
        (
            lambda d: d["all"]["children"]["workers"]["hosts"].update(w={"ansible_host": "10.77.124.7"}),
            "same kubelab_ip",
        ),
    ],
)
def test_mistakes_are_named(tmp_path: Path, key: Path, change, message: str) -> None:
    data = inventory(key, {"cp": {"ansible_host": "10.77.124.7"}})
    change(data)
    with pytest.raises(ProviderError, match=message.replace("(", r"\(").replace(")", r"\)")):
        map_hosts(write(tmp_path, data), SUBNET, vip="10.77.124.10", lb_nodes=0)


def test_haproxy_needs_its_lb_hosts(tmp_path: Path, key: Path) -> None:
    data = inventory(key, {"cp": {"ansible_host": "10.77.124.7"}}, lb={"lb1": {"ansible_host": "10.77.124.11"}})
    with pytest.raises(ProviderError, match="lb haproxy needs 2 host"):
        map_hosts(write(tmp_path, data), SUBNET, vip="10.77.124.10", lb_nodes=2)
    hosts = map_hosts(write(tmp_path, data), SUBNET, vip="10.77.124.10", lb_nodes=1)
    assert [h.node for h in hosts] == ["lb-1", "master-1"]


def test_unreadable_or_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ProviderError, match="cannot read the hosts inventory"):
        map_hosts(tmp_path / "missing.yml", SUBNET, vip=None, lb_nodes=0)
    with pytest.raises(ProviderError, match="is not valid YAML"):
        map_hosts(write(tmp_path, "all: [\n"), SUBNET, vip=None, lb_nodes=0)
