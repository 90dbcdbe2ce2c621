"""A restarted local node gets its persistent net.* kernel parameters back: the boot lines read the node's
sysctl files and write each net.* key into the (new) network namespace's /proc/sys, nothing else."""

from __future__ import annotations

import subprocess
from pathlib import Path

from provisioner.providers import local_node


def boot(tmp_path: Path, files: dict[str, str], keys: list[str]) -> tuple[dict[str, str], str]:
    """Run the lines against a node root holding `files` and a fake /proc/sys holding `keys` (all "0")."""
    root, proc = tmp_path / "root", tmp_path / "proc-sys"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    for key in keys:
        (proc / key.replace(".", "/")).parent.mkdir(parents=True, exist_ok=True)
        (proc / key.replace(".", "/")).write_text("0\n")
    script = "\n".join(local_node.sysctl_lines(str(root), str(proc)))
    done = subprocess.run(["sh", "-eu", "-c", script], capture_output=True, text=True, check=True)
    values = {key: (proc / key.replace(".", "/")).read_text().strip() for key in keys}
    return values, done.stderr


def test_net_keys_of_every_sysctl_file_are_applied_in_order(tmp_path: Path) -> None:
    files = {
        "etc/sysctl.conf": "# comment\n;net.ipv4.tcp_syncookies = 1\nnet.ipv4.ip_forward=1\n",
        "etc/sysctl.d/10-first.conf": "net.ipv4.ip_nonlocal_bind = 2\n  net.bridge.bridge-nf-call-iptables = 1  \n",
        "etc/sysctl.d/90-kubelab.conf": "net.ipv4.ip_nonlocal_bind = 1\n-net.ipv4.ping_group_range = 0 2147483647\n",
        "etc/sysctl.d/README": "net.ipv4.ip_forward = 5\n",  # not a .conf file
    }
    keys = ["net.ipv4.ip_forward", "net.ipv4.ip_nonlocal_bind", "net.bridge.bridge-nf-call-iptables"]
    keys += ["net.ipv4.ping_group_range", "net.ipv4.tcp_syncookies"]
    values, errors = boot(tmp_path, files, keys)
    assert values == {
        "net.ipv4.ip_forward": "1",
        "net.ipv4.ip_nonlocal_bind": "1",  # the later file wins
        "net.bridge.bridge-nf-call-iptables": "1",
        "net.ipv4.ping_group_range": "0 2147483647",
        "net.ipv4.tcp_syncookies": "0",  # commented out
    }
    assert errors == ""


def test_host_wide_keys_are_left_alone_and_a_missing_key_does_not_stop_the_boot(tmp_path: Path) -> None:
    files = {"etc/sysctl.d/99-user.conf": "vm.swappiness = 1\nkernel.pid_max = 5\nnet.ipv4.no_such_key = 1\n"}
    values, errors = boot(tmp_path, files, ["vm.swappiness", "kernel.pid_max"])
    assert values == {"vm.swappiness": "0", "kernel.pid_max": "0"}
    assert "cannot set net.ipv4.no_such_key from" in errors and "99-user.conf" in errors


def test_a_node_without_sysctl_files_boots(tmp_path: Path) -> None:
    (tmp_path / "root" / "etc").mkdir(parents=True)
    values, errors = boot(tmp_path, {}, [])
    assert (values, errors) == ({}, "")


def test_the_init_script_applies_them_to_the_node_root_before_systemd_starts() -> None:
    files = local_node.NodeFiles(Path("/var/lib/kubelab/nodes/master-1"))
    script = local_node.init_script(files, [Path("/base")], "master-1").splitlines()
    start = script.index(
        "for conf in /var/lib/kubelab/nodes/master-1/root/etc/sysctl.conf "
        "/var/lib/kubelab/nodes/master-1/root/etc/sysctl.d/*.conf; do"
    )
    assert any(line.startswith("mount -t overlay") for line in script[:start])
    assert script.index("pivot_root . .") > start
