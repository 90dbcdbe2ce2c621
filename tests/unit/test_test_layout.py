"""pytest imports test files by basename (rootdir mode): two files with one name break collection."""

from __future__ import annotations

from collections import Counter

from provisioner.lab import REPO_ROOT


def test_every_test_file_has_a_unique_basename() -> None:
    names = Counter(path.name for path in (REPO_ROOT / "tests").rglob("*.py") if path.name != "__init__.py")
    clashes = sorted(name for name, count in names.items() if count > 1 and name != "conftest.py")
    assert not clashes, f"rename so every test module name is unique: {clashes}"
