"""Every node: swap, kernel modules, sysctls, time; on Kubernetes nodes containerd, crictl, kubelet, packages."""

from __future__ import annotations

import pytest
import yaml

from provisioner.checks import nodeparse

# Kernel features Kubernetes nodes need, and how to see them when the module is built in (or loaded).
MODULE_FEATURES: dict[str, str] = {
    "overlay": "grep -qw overlay /proc/filesystems",
    "br_netfilter": "test -e /proc/sys/net/bridge/bridge-nf-call-iptables",
}
SYSCTLS: dict[str, int] = {
    "net.ipv4.ip_forward": 1,
    "net.bridge.bridge-nf-call-iptables": 1,
    "net.bridge.bridge-nf-call-ip6tables": 1,
}
CONTAINERD_SOCKET_PATHS = ("/run/containerd/containerd.sock", "/var/run/containerd/containerd.sock")
KUBERNETES_PACKAGES = ("kubelet", "kubeadm", "kubectl")


@pytest.mark.phase("prepare")
def test_swap_off(host):
    swaps = nodeparse.active_swaps(host.file("/proc/swaps").content_string)
    assert not swaps, f"swap is on: {', '.join(swaps)} (run `swapoff -a`; the kubelet refuses to start with swap)"


@pytest.mark.phase("prepare")
def test_swap_not_in_fstab(host):
    fstab = host.file("/etc/fstab")
    entries = nodeparse.fstab_swap_entries(fstab.content_string) if fstab.exists else []
    assert not entries, f"/etc/fstab turns swap on at boot: {'; '.join(entries)}"


def module_state(host, module: str) -> str:
    """'loaded', 'built in' or 'missing', decided from the node's files (no loadable modules: /proc/modules absent)."""
    if host.file("/proc/modules").exists:
        loaded = {line.split()[0] for line in host.file("/proc/modules").content_string.splitlines() if line}
        if module in loaded:
            return "loaded"
        builtin = host.run(f"grep -qE '/{module}\\.ko' /lib/modules/$(uname -r)/modules.builtin")
        return "built in" if builtin.rc == 0 else "missing"
    return "built in" if host.run(MODULE_FEATURES[module]).rc == 0 else "missing"


@pytest.mark.phase("prepare")
@pytest.mark.groups("k8s_cluster")
@pytest.mark.parametrize("module", sorted(MODULE_FEATURES))
def test_kernel_module(host, module):
    state = module_state(host, module)
    assert state != "missing", f"{module} is neither loaded nor built into the kernel"
    assert host.run(MODULE_FEATURES[module]).rc == 0, f"{module} is {state} but its feature is not visible"
    if state == "loaded":
        persisted = host.run(f"grep -rqsxE '\\s*{module}\\s*' /etc/modules-load.d /etc/modules")
        assert persisted.rc == 0, f"{module} is loaded but not listed in /etc/modules-load.d (lost at reboot)"


@pytest.mark.phase("prepare")
@pytest.mark.groups("k8s_cluster")
@pytest.mark.parametrize("name", sorted(SYSCTLS))
def test_sysctl(host, name):
    result = host.run(f"sysctl -n {name}")
    assert result.rc == 0, f"{name} is not available: {result.stderr.strip()}"
    assert result.stdout.strip() == str(SYSCTLS[name]), f"{name} = {result.stdout.strip()}, expected {SYSCTLS[name]}"


@pytest.mark.phase("prepare")
def test_time_synchronised(host):
    show = nodeparse.key_values(host.run("timedatectl show").stdout)
    synced = show.get("NTPSynchronized")
    if host.run("systemd-detect-virt --container").rc == 0:
        pytest.skip(
            "container node: its clock is the host's kernel clock"
            f" (NTPSynchronized={synced or 'unknown'}); keep the host synchronised"
        )
    assert synced == "yes", (
        f"clock not synchronised: NTPSynchronized={synced or 'unknown'}, NTP={show.get('NTP', 'unknown')}"
        " (is chrony or systemd-timesyncd running? nodes that cannot reach the OS's time servers need"
        " ntp_servers / --ntp-servers)"
    )


@pytest.mark.phase("runtime")
@pytest.mark.groups("k8s_cluster")
def test_containerd_active(host):
    state = host.run("systemctl is-active containerd").stdout.strip()
    assert state == "active", f"containerd is {state or 'not installed'}"


@pytest.mark.phase("runtime")
@pytest.mark.groups("k8s_cluster")
def test_containerd_systemd_cgroup(host):
    dump = host.run("containerd config dump")
    assert dump.rc == 0, f"`containerd config dump` failed: {dump.stderr.strip()[:200]}"
    try:
        setting = nodeparse.containerd_systemd_cgroup(dump.stdout)
    except ValueError as exc:
        pytest.fail(f"containerd's effective config: {exc}")
    assert setting.value is True, (
        f"SystemdCgroup = {str(setting.value).lower() if setting.value is not None else 'unset (false)'}"
        f" in {setting.table}; the kubelet uses the systemd cgroup driver"
    )


@pytest.mark.phase("runtime")
@pytest.mark.groups("k8s_cluster")
def test_crictl_talks_to_containerd(host, require_phase):
    config = host.file("/etc/crictl.yaml")
    assert config.exists, "/etc/crictl.yaml is missing"
    endpoint = str((yaml.safe_load(config.content_string) or {}).get("runtime-endpoint") or "")
    assert endpoint.removeprefix("unix://") in CONTAINERD_SOCKET_PATHS, (
        f"/etc/crictl.yaml runtime-endpoint is {endpoint or 'unset'}, not containerd's socket"
    )
    if not host.exists("crictl"):
        require_phase("packages")
        pytest.fail("crictl is not installed")
    info = host.run("crictl info")
    assert info.rc == 0, f"`crictl info` failed: {info.stderr.strip()[:200]}"
    ready, summary = nodeparse.crictl_runtime_ready(info.stdout)
    assert ready, f"containerd runtime not ready: {summary}"


@pytest.mark.phase("packages")
@pytest.mark.groups("k8s_cluster")
def test_kubernetes_packages_pinned_and_held(host, lab):
    wanted = lab.kubernetes_version
    if lab.artifacts_form == "bin":  # plain binaries from the artifacts folder: no packages to hold
        versions = {
            "kubeadm": host.run("kubeadm version -o short").stdout.strip(),
            "kubelet": host.run("kubelet --version").stdout.strip().removeprefix("Kubernetes "),
            "kubectl": nodeparse.kubectl_client_version(host.run("kubectl version --client -o json").stdout),
        }
        wrong = {p: v or "missing" for p, v in versions.items() if not nodeparse.version_matches(v.lstrip("v"), wanted)}
        assert not wrong, f"binaries {wrong} do not match the lab's Kubernetes {wanted}"
        return
    fmt = "${Package} ${Version} ${db:Status-Status}\\n"
    installed = nodeparse.dpkg_versions(host.run(f"dpkg-query -W -f='{fmt}' {' '.join(KUBERNETES_PACKAGES)}").stdout)
    missing = [p for p in KUBERNETES_PACKAGES if p not in installed]
    assert not missing, f"not installed: {', '.join(missing)}"
    wrong = {p: v for p, v in installed.items() if not nodeparse.version_matches(v, wanted)}
    assert not wrong, f"versions {wrong} do not match the lab's Kubernetes {wanted}"
    held = set(host.run("apt-mark showhold").stdout.split())
    unheld = [p for p in KUBERNETES_PACKAGES if p not in held]
    assert not unheld, f"not held (an apt upgrade would move them): {', '.join(unheld)}"


@pytest.mark.phase(masters="control-plane", workers="workers")
@pytest.mark.groups("k8s_cluster")
def test_kubelet_running_with_node_ip(host, lab, node):
    state = host.run("systemctl is-active kubelet").stdout.strip()
    assert state == "active", f"kubelet is {state or 'not installed'}"
    pid = host.run("systemctl show -p MainPID --value kubelet").stdout.strip()
    cmdline = host.file(f"/proc/{pid}/cmdline").content
    node_ip = nodeparse.kubelet_flag(cmdline, "node-ip")
    expected = lab.nodes[node]
    assert node_ip == expected, f"kubelet --node-ip is {node_ip or 'not set'}, expected the private IP {expected}"
