"""The state file of a local lab: every host resource is recorded here BEFORE it is created, so `destroy`
can remove it after a crash or a SIGKILL at any point."""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class LocalState:
    """JSON file: lab name, bridge, subnet, iptables rules, host sysctl hold, and per node its resources."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
        self.data.setdefault("nodes", {})
        self.data.setdefault("rules", [])
        self._mutex = threading.Lock()  # nodes are started from threads

    def exists(self) -> bool:
        return self.path.is_file()

    def save(self) -> None:
        with self._mutex:
            self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w") as handle:
            json.dump(self.data, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self.path)

    def record(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.save()

    def record_rule(self, rule: list[str]) -> None:
        if rule not in self.data["rules"]:
            self.data["rules"].append(rule)
            self.save()

    def node(self, name: str) -> dict[str, Any]:
        return self.data["nodes"].get(name, {})

    def forget_node(self, name: str) -> None:
        """Drop a removed node's record (after its resources are gone)."""
        with self._mutex:
            self.data["nodes"].pop(name, None)
            self._write()

    def record_node(self, name: str, **values: Any) -> None:
        with self._mutex:
            self.data["nodes"].setdefault(name, {}).update(values)
            self._write()


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on `path`: one kubelab process at a time (released when it dies, even by SIGKILL)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
