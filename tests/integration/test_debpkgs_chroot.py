"""debpkgs for real: iptables and its closure from the host's apt, unpacked and run under chroot (root)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from provisioner import debpkgs

pytestmark = pytest.mark.integration


@pytest.mark.skipif(os.geteuid() != 0, reason="chroot needs root")
def test_iptables_unpacked_with_its_closure_runs_in_a_chroot() -> None:
    with tempfile.TemporaryDirectory(prefix="kubelab-debpkgs-") as tmp:
        root = Path(tmp)
        unpacked = debpkgs.unpack(["iptables"], root)
        assert any(entry.startswith("libc6=") for entry in unpacked)
        assert not (root / "usr/share/doc").exists()
        debpkgs.alternatives(root, debpkgs.iptables_links("nft"))
        for command, output in (
            ("iptables-nft", "(nf_tables)"),
            ("iptables-legacy", "(legacy)"),
            ("iptables", "(nf_tables)"),
        ):
            run = subprocess.run(["chroot", tmp, f"/usr/sbin/{command}", "-V"], capture_output=True, text=True)
            assert run.returncode == 0, run.stderr
            assert run.stdout.startswith("iptables v") and output in run.stdout
