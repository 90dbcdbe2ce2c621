"""Run one playbook against a lab: full output to the phase's log file, progress and failures from events.

The events come from kubelab's own callback plugin (provisioner/callback_plugins/kubelab_events.py),
which writes JSON lines to a file next to the log while Ansible's normal output goes to the log itself.
"""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from provisioner.children import die_with_parent
from provisioner.lab import REPO_ROOT, LabDir
from provisioner.progress import PhaseProgress
from provisioner.state import logs_dir

ANSIBLE_CFG = REPO_ROOT / "playbooks" / "ansible.cfg"
CALLBACK_DIR = Path(__file__).resolve().parent / "callback_plugins"
CALLBACK_NAME = "kubelab_events"
LOG_TAIL_LINES = 15


@dataclass(frozen=True)
class Failure:
    host: str
    task: str
    message: str
    unreachable: bool = False


@dataclass
class PlaybookResult:
    returncode: int
    log_file: Path
    failures: list[Failure] = field(default_factory=list)
    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    tasks: int = 0

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def summary(self) -> str:
        """E.g. '3 hosts, 12 changed' from the recap."""
        if not self.stats:
            return ""
        changed = sum(host.get("changed", 0) for host in self.stats.values())
        return f"{len(self.stats)} host(s), {changed} changed"

    def failure_report(self) -> str:
        """What failed, where, and where the full log is; the log's tail when Ansible reported no task."""
        lines = []
        for failure in self.failures:
            what = "unreachable" if failure.unreachable else "failed"
            message = failure.message.replace("\n", "\n      ")
            lines.append(f"  {failure.host} {what} in task '{failure.task}':\n      {message}")
        if not lines:
            tail = _tail(self.log_file, LOG_TAIL_LINES)
            lines.append(f"  ansible-playbook exited with {self.returncode}; end of its output:")
            lines.extend(f"    {line}" for line in tail)
        lines.append(f"  full log: {self.log_file}")
        return "\n".join(lines)


def _tail(path: Path, count: int) -> list[str]:
    try:
        return [line for line in path.read_text(errors="replace").splitlines() if line.strip()][-count:]
    except OSError:
        return []


def ansible_playbook_command() -> str:
    """ansible-playbook next to this Python (the virtualenv), else the one on PATH."""
    candidate = Path(sys.executable).parent / "ansible-playbook"
    return str(candidate) if candidate.exists() else "ansible-playbook"


def _configured(section: str, key: str) -> list[str]:
    """A comma-separated setting from playbooks/ansible.cfg, so enabling kubelab's callback keeps it."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ANSIBLE_CFG)
    value = parser.get(section, key, fallback="")
    return [item.strip() for item in value.replace(":", ",").split(",") if item.strip()]


def environment(events_file: Path) -> dict[str, str]:
    env = dict(os.environ)
    callbacks = [CALLBACK_NAME, *_configured("defaults", "callbacks_enabled")]
    plugin_dirs = [str(CALLBACK_DIR)]
    for directory in _configured("defaults", "callback_plugins"):
        path = Path(directory).expanduser()
        plugin_dirs.append(str(path if path.is_absolute() else ANSIBLE_CFG.parent / path))
    env.update(
        ANSIBLE_CONFIG=str(ANSIBLE_CFG),
        ANSIBLE_CALLBACKS_ENABLED=",".join(dict.fromkeys(callbacks)),
        ANSIBLE_CALLBACK_PLUGINS=":".join(dict.fromkeys(plugin_dirs)),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        PYTHONUNBUFFERED="1",
        KUBELAB_EVENTS_FILE=str(events_file),
    )
    return env


def playbook_command(lab: LabDir, playbook: Path, extra_args: list[str] | None = None) -> list[str]:
    return [
        ansible_playbook_command(),
        "-i",
        str(lab.inventory_dir),
        "-e",
        f"kubelab_lab_dir={lab.root.resolve()}",
        *(extra_args or []),
        str(playbook),
    ]


def run_playbook(
    lab: LabDir, phase: str, playbook: Path, progress: PhaseProgress, extra_args: list[str] | None = None
) -> PlaybookResult:
    """Run `playbook` for `phase`; output to <lab>/logs/<phase>.log, current task shown on `progress`."""
    logs = logs_dir(lab)
    logs.mkdir(parents=True, exist_ok=True)
    log_file = logs / f"{phase}.log"
    events_file = logs / f".{phase}.events"
    events_file.unlink(missing_ok=True)
    events_file.touch()
    result = PlaybookResult(returncode=-1, log_file=log_file)
    command = playbook_command(lab, playbook, extra_args)
    with open(log_file, "w") as log, open(events_file) as events:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=environment(events_file),
            cwd=lab.root,
            preexec_fn=die_with_parent,
        )
        pending = ""
        try:
            while True:
                finished = process.poll() is not None
                pending += events.read()
                *lines, pending = pending.split("\n")
                for line in lines:
                    _apply_event(line, result, progress)
                if finished:
                    break
                time.sleep(0.2)
        except BaseException:
            process.terminate()
            process.wait()
            raise
    result.returncode = process.returncode
    events_file.unlink(missing_ok=True)
    return result


def _apply_event(line: str, result: PlaybookResult, progress: PhaseProgress) -> None:
    try:
        event = json.loads(line)
    except ValueError:
        return
    kind = event.get("event")
    if kind == "task":
        result.tasks += 1
        progress.update(str(event.get("name", "")))
    elif kind in ("failed", "unreachable") and not event.get("ignored"):
        result.failures.append(
            Failure(
                host=str(event.get("host")),
                task=str(event.get("task")),
                message=str(event.get("msg")),
                unreachable=kind == "unreachable",
            )
        )
    elif kind == "stats":
        result.stats = event.get("hosts") or {}
