"""Console progress for long commands: one line per phase, a spinner and elapsed time on a terminal.

On a terminal the current phase line is redrawn in place (spinner, elapsed time, what runs now); in a
pipe or CI log each phase prints a start and an end line only, so logs stay short.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

SPINNER = "|/-\\"


def format_seconds(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


class PhaseProgress:
    """The line of the running phase. Use as a context manager; call `update` with what runs now."""

    def __init__(self, name: str, title: str, stream: TextIO | None = None, tty: bool | None = None) -> None:
        self.name = name
        self.title = title
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.started = time.monotonic()
        self.detail = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._width = 0

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def __enter__(self) -> PhaseProgress:
        if self.tty:
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()
        else:
            self._print(f"-> {self.name:<14}{self.title}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._ticker:
            self._ticker.join()

    def update(self, detail: str) -> None:
        """What the phase is doing now (a task name, a node's state)."""
        with self._lock:
            self.detail = detail

    def note(self, message: str) -> None:
        """A line that stays (e.g. a node that came up)."""
        with self._lock:
            self._clear()
            self._print(f"   {message}")

    def finish(self, ok: bool, summary: str = "") -> None:
        self._stop.set()
        if self._ticker:
            self._ticker.join()
            self._ticker = None
        mark = "ok" if ok else "FAILED"
        with self._lock:
            self._clear()
            tail = f"  {summary}" if summary else ""
            self._print(f"{'✓' if ok else '✗'} {self.name:<14}{format_seconds(self.elapsed):>6}  {mark}{tail}")

    def _tick(self) -> None:
        frame = 0
        while not self._stop.wait(0.2):
            with self._lock:
                spin = SPINNER[frame % len(SPINNER)]
                line = f"{spin} {self.name:<14}{format_seconds(self.elapsed):>6}  {self.detail}"
                self._draw(line[:119])
            frame += 1

    def _draw(self, line: str) -> None:
        pad = max(self._width - len(line), 0)
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()
        self._width = len(line)

    def _clear(self) -> None:
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0

    def _print(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()
