"""Ansible callback plugin: task starts, failures and the recap as JSON lines, for kubelab's progress display.

kubelab enables it for its own runs and sets KUBELAB_EVENTS_FILE; the normal console output still goes
to the phase's log file. Results of `no_log` tasks arrive here already censored by Ansible.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from ansible.plugins.callback import CallbackBase

if TYPE_CHECKING:
    from ansible.executor.stats import AggregateStats
    from ansible.executor.task_result import TaskResult
    from ansible.playbook.play import Play
    from ansible.playbook.task import Task

DOCUMENTATION = """
name: kubelab_events
type: aggregate
short_description: write task progress and failures as JSON lines for kubelab
description:
  - Writes one JSON object per line to the file named by the KUBELAB_EVENTS_FILE environment variable.
requirements:
  - enabled in callbacks_enabled
"""

MAX_TEXT = 2000


def _message(result: dict) -> str:
    """The most useful text of a failed result: msg, then stderr, then stdout."""
    if result.get("censored"):
        return str(result["censored"])
    parts = []
    for key in ("msg", "stderr", "stdout"):
        value = result.get(key)
        if value and str(value).strip() and str(value) not in parts:
            parts.append(str(value).strip())
    if not parts and result.get("results"):
        for item in result["results"]:
            if isinstance(item, dict) and item.get("failed"):
                return _message(item)
    text = "\n".join(parts) or "no message"
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + " [...]"


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "kubelab_events"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        path = os.environ.get("KUBELAB_EVENTS_FILE")
        self._out = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115 (open for the whole run)

    def _emit(self, **event: object) -> None:
        if self._out:
            self._out.write(json.dumps(event, default=str) + "\n")
            self._out.flush()

    def v2_playbook_on_play_start(self, play: Play) -> None:
        self._emit(event="play", name=play.get_name())

    def v2_playbook_on_task_start(self, task: Task, is_conditional: bool) -> None:
        self._emit(event="task", name=task.get_name())

    def v2_playbook_on_handler_task_start(self, task: Task) -> None:
        self._emit(event="task", name=task.get_name())

    def v2_runner_on_failed(self, result: TaskResult, ignore_errors: bool = False) -> None:
        self._emit(
            event="failed",
            host=result._host.get_name(),
            task=result._task.get_name(),
            msg=_message(result._result),
            ignored=bool(ignore_errors),
        )

    def v2_runner_on_unreachable(self, result: TaskResult) -> None:
        self._emit(
            event="unreachable",
            host=result._host.get_name(),
            task=result._task.get_name(),
            msg=_message(result._result),
            ignored=False,
        )

    def v2_playbook_on_stats(self, stats: AggregateStats) -> None:
        hosts = {host: stats.summarize(host) for host in sorted(stats.processed)}
        self._emit(event="stats", hosts=hosts)
        if self._out:
            self._out.close()
            self._out = None
