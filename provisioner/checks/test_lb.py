"""Load balancers: haproxy listening on the API port with every master as a backend, the VIP on exactly one node."""

from __future__ import annotations

import pytest

from provisioner.checks import nodeparse, probes

HAPROXY_CONFIG = "/etc/haproxy/haproxy.cfg"


@pytest.mark.phase("loadbalancer")
@pytest.mark.groups("lb")
def test_haproxy_listening(host, lab):
    state = host.run("systemctl is-active haproxy").stdout.strip()
    assert state == "active", f"haproxy is {state or 'not installed'}"
    listeners = nodeparse.tcp_listeners(host.run("ss -Htlnp").stdout)
    on_port = nodeparse.listens_on(listeners, lab.vip or "", lab.api_port)
    assert on_port, f"nothing listens on {lab.vip}:{lab.api_port}" + (
        f" (listening: {', '.join(sorted({f'{x.address}:{x.port}' for x in listeners}))})" if listeners else ""
    )
    owners = {x.process for x in on_port}
    assert any("haproxy" in owner for owner in owners), f"port {lab.api_port} is held by {owners}, not haproxy"


@pytest.mark.phase("loadbalancer")
@pytest.mark.groups("lb")
def test_haproxy_backends_are_all_masters(host, lab):
    config = host.file(HAPROXY_CONFIG)
    assert config.exists, f"{HAPROXY_CONFIG} is missing"
    valid = host.run(f"haproxy -c -f {HAPROXY_CONFIG}")
    assert valid.rc == 0, f"haproxy rejects its config: {(valid.stderr or valid.stdout).strip()[:200]}"
    servers = nodeparse.haproxy_servers(config.content_string)
    expected = {f"{ip}:{lab.apiserver_port}" for ip in lab.masters.values()}
    assert servers == expected, f"backends {sorted(servers) or 'none'}, expected every master: {sorted(expected)}" + (
        f"; missing {sorted(expected - servers)}" if expected - servers else ""
    )


@pytest.mark.phase("loadbalancer")
@pytest.mark.groups("lb")
def test_keepalived_active(host):
    state = host.run("systemctl is-active keepalived").stdout.strip()
    assert state == "active", f"keepalived is {state or 'not installed'}"


def test_vip_on_exactly_one_node(lab, node_hosts, require_phase):
    if lab.lb_kind not in ("haproxy", "kube-vip"):
        pytest.skip(f"the lab has no virtual IP (lb: {lab.lb_kind})")
    require_phase("loadbalancer" if lab.lb_kind == "haproxy" else "control-plane")
    found = probes.vip_holders(lab.vip, {name: node_hosts[name] for name in lab.vip_holders})
    holders = [f"{name} ({ifname})" for name, ifname in found]
    role = "load balancer" if lab.lb_kind == "haproxy" else "master (kube-vip)"
    assert len(holders) == 1, (
        f"VIP {lab.vip} is on {len(holders)} {role} nodes: {', '.join(holders)}"
        if holders
        else f"VIP {lab.vip} is on no {role} node"
    )
