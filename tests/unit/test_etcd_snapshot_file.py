"""`kubelab etcd restore` refuses, on the host and before anything changes, a file that is not an etcd
snapshot or whose stored sha256 does not match (the check etcdutl makes before it restores)."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

from provisioner import etcd_backup
from provisioner.cli import main


def fake_snapshot(path: Path, pages: int = 4) -> Path:
    """A bolt-shaped database (magic in the first meta page, whole 512-byte blocks) plus its sha256, the way
    `etcdctl snapshot save` writes one."""
    db = bytearray(512 * pages)
    struct.pack_into("<I", db, 16, etcd_backup.BOLT_MAGIC)
    db[600:605] = b"kubel"
    path.write_bytes(bytes(db) + hashlib.sha256(db).digest())
    return path


def test_a_snapshot_with_its_hash_verifies(tmp_path: Path) -> None:
    assert etcd_backup.snapshot_problem(fake_snapshot(tmp_path / "ok.db")) is None


def test_a_damaged_snapshot_does_not_verify(tmp_path: Path) -> None:
    path = fake_snapshot(tmp_path / "bad.db")
    data = bytearray(path.read_bytes())
    data[601] ^= 0xFF
    path.write_bytes(bytes(data))
    assert etcd_backup.snapshot_problem(path) == (
        f"{path} does not verify: the sha256 stored in the snapshot does not match its data (damaged?)"
    )


def test_files_that_are_no_snapshot_are_named_as_such(tmp_path: Path) -> None:
    good = fake_snapshot(tmp_path / "good.db").read_bytes()
    cases = {
        "empty": b"",
        "text": b"apiVersion: v1\nkind: Config\n",
        "no-hash": good[:-32],  # a bare database file copied from /var/lib/etcd
        "no-magic": bytes(512 * 4) + hashlib.sha256(bytes(512 * 4)).digest(),
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        assert (
            etcd_backup.snapshot_problem(path)
            == f"{path} is not an etcd snapshot (take one with `kubelab etcd snapshot`)"
        )
    assert etcd_backup.snapshot_problem(tmp_path / "missing") == f"{tmp_path / 'missing'} does not exist"


def test_the_cli_refuses_before_it_asks_or_looks_at_the_lab(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("KUBELAB_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("builtins.input", lambda _prompt: (_ for _ in ()).throw(AssertionError("asked")))
    path = tmp_path / "notes.txt"
    path.write_text("not a snapshot\n")
    assert main(["etcd", "restore", str(path), "--name", "nolab"]) == 1
    assert "is not an etcd snapshot" in capsys.readouterr().err
