"""`kubelab test failover`'s sequence on a simulated lab: what it stops, what it asserts, that it always restores.

No cluster can run here, so the nodes and kubectl are stand-ins that answer the exact commands failover.py sends
(`ip -j -4 addr show`, systemctl, crictl, kubectl/etcdctl) the way a 3-master haproxy lab would; the commands
and outputs are the ones the real probes parse.
"""

from __future__ import annotations

import io
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from provisioner import failover
from provisioner.checks import kube, labfacts
from provisioner.checks.labfacts import LabFacts

VIP = "10.77.131.10"


@dataclass
class World:
    """What is up in the simulated lab, and every command the test sent, in order."""

    vip_on: str = "lb-1"
    keepalived_moves_vip: bool = True
    down: set[str] = field(default_factory=set)
    commands: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Out:
    rc: int
    stdout: str = ""
    stderr: str = ""


class FakeHost:
    def __init__(self, name: str, ip: str, world: World) -> None:
        self.name, self.ip, self.world = name, ip, world

    def run(self, command: str) -> Out:
        world = self.world
        with world.lock:
            if command == "ip -j -4 addr show":
                local = [{"family": "inet", "local": self.ip, "prefixlen": 24}]
                if world.vip_on == self.name:
                    local.append({"family": "inet", "local": VIP, "prefixlen": 32})
                return Out(0, json.dumps([{"ifname": "eth0", "addr_info": local}]))
            world.commands.append((self.name, command))
            if command == "systemctl stop keepalived":
                world.down.add(f"keepalived@{self.name}")
                if world.keepalived_moves_vip:
                    world.vip_on = "lb-2" if self.name == "lb-1" else "lb-1"
            elif command == failover.STOP_MASTER:
                world.down.add(self.name)
            elif command == "systemctl start keepalived":
                world.down.discard(f"keepalived@{self.name}")
            elif command == "systemctl start kubelet":
                world.down.discard(self.name)
            return Out(0)


class FakeKubectl(kube.Kubectl):
    """Answers like the API behind the VIP: /readyz, etcdctl in the etcd pods, configmaps, nodes."""

    def __init__(self, lab: LabFacts, world: World) -> None:
        self.lab, self.world, self.where = lab, world, "fake kubectl"

    def run(self, *args: str, stdin: str | None = None, check: bool = True, timeout: int = 120) -> kube.Result:
        world = self.world
        if args[0] == "get" and args[1].startswith("--raw=/readyz"):
            return kube.Result(0, "ok", "")
        if "etcdctl" in args:
            masters = self.lab.masters.items()
            health = [
                {"endpoint": f"https://{ip}:2379", "health": name not in world.down, "took": "1ms"}
                for name, ip in masters
            ]
            return kube.Result(0 if not world.down & set(self.lab.masters) else 1, json.dumps(health), "")
        if args[:4] == ("-n", "default", "create", "configmap"):
            return kube.Result(0, f"configmap/{args[4]} created", "")
        if args[:2] == ("get", "nodes"):
            nodes = [
                {
                    "metadata": {"name": name},
                    "status": {
                        "conditions": [{"type": "Ready", "status": "Unknown" if name in world.down else "True"}],
                        "addresses": [{"type": "InternalIP", "address": ip}],
                    },
                }
                for name, ip in self.lab.k8s_nodes.items()
            ]
            return kube.Result(0, json.dumps({"items": nodes}), "")
        if args[:3] == ("get", "pods", "--all-namespaces"):
            pods = [
                {
                    "metadata": {"name": f"kube-proxy-{name}", "namespace": "kube-system"},
                    "spec": {"nodeName": name},
                    "status": {
                        "phase": "Running",
                        "containerStatuses": [
                            {
                                "name": "kube-proxy",
                                "ready": name not in world.down,
                                # the kubelet of a node that is up restarted its containers just now
                                "state": {"running": {"startedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}},
                            }
                        ],
                    },
                }
                for name in self.lab.k8s_nodes
            ]
            return kube.Result(0, json.dumps({"items": pods}), "")
        return kube.Result(0, "", "")


def lab_facts(masters: int = 3) -> LabFacts:
    groups = {
        "lb": {"lb-1": "10.77.131.11", "lb-2": "10.77.131.12"},
        "masters": {f"master-{i}": f"10.77.131.{20 + i}" for i in range(1, masters + 1)},
        "workers": {"worker-1": "10.77.131.31"},
    }
    variables = {
        "kubelab_lb": "haproxy",
        "kubelab_vip": VIP,
        "kubelab_api_port": 6443,
        "kubelab_init_master": "master-1",
    }
    return LabFacts(root=Path("/nonexistent"), groups=groups, variables=variables)


def run(world: World) -> tuple[bool, str]:
    lab = lab_facts()
    hosts = {name: FakeHost(name, ip, world) for name, ip in lab.nodes.items()}
    out = io.StringIO()
    passed = failover.Failover(lab, hosts, out, kubectl=FakeKubectl(lab, world)).run()
    return passed, out.getvalue()


def test_failover_stops_the_vip_holder_and_a_master_then_restores_both(monkeypatch):
    monkeypatch.setattr(failover, "POLL_SECONDS", 0.05)
    world = World()
    passed, text = run(world)
    assert passed, text
    assert world.commands == [
        ("lb-1", "systemctl stop keepalived"),
        ("master-3", failover.STOP_MASTER),
        ("lb-1", "systemctl start keepalived"),
        ("master-3", "systemctl start kubelet"),
    ]
    assert world.down == set()
    for line in (
        "PASS  VIP moved: lb-1 -> lb-2",
        f"PASS  API answers through the VIP: https://{VIP}:6443/readyz",
        "PASS  etcd keeps quorum: 2 of 3 healthy, need 2",
        "PASS  a write succeeds: configmap kubelab-failover-",
        "PASS  lab recovered",
        "API unreachable for 0.0 s",
    ):
        assert line in text


def test_a_vip_that_does_not_move_fails_and_the_lab_is_still_restored(monkeypatch):
    monkeypatch.setattr(failover, "POLL_SECONDS", 0.05)
    monkeypatch.setattr(failover, "MOVE_TIMEOUT", 2)
    world = World(keepalived_moves_vip=False)
    passed, text = run(world)
    assert not passed
    assert "FAIL  VIP moved: lb-1 -> lb-1" in text
    assert world.commands[-2:] == [("lb-1", "systemctl start keepalived"), ("master-3", "systemctl start kubelet")]
    assert world.down == set()


def test_failover_refuses_a_vip_on_two_nodes():
    lab = lab_facts()
    world = World()
    hosts = {name: FakeHost(name, ip, world) for name, ip in lab.nodes.items()}
    hosts["lb-2"].run = lambda command, host=hosts["lb-2"]: FakeHost.run(hosts["lb-1"], command)  # lb-2 has it too
    with pytest.raises(failover.FailoverError, match=r"is on 2 nodes .*run `kubelab verify` first"):
        failover.Failover(lab, hosts, io.StringIO(), kubectl=FakeKubectl(lab, world)).run()
    assert world.commands == []


def test_cli_refuses_a_single_master_lab(tmp_path, capsys):
    from provisioner import cli

    lab = tmp_path / "one"
    (lab / "inventory" / "group_vars" / "all").mkdir(parents=True)
    hosts = {"all": {"children": {"masters": {"hosts": {"master-1": {"kubelab_ip": "10.77.131.21"}}}}}}
    (lab / "inventory" / "hosts.yml").write_text(json.dumps(hosts))
    (lab / "inventory" / "group_vars" / "all" / "lab.yml").write_text(json.dumps({"kubelab_lb": "none"}))
    assert labfacts.read_lab(lab).masters == {"master-1": "10.77.131.21"}
    code = cli.main(["test", "failover", "--lab", str(lab)])
    assert code == 2
    assert "1 master(s): a failover test needs at least 3" in capsys.readouterr().err
