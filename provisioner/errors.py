"""The base class of every error a user sees as ``error: ...`` instead of a traceback.

The CLI catches ``KubelabError`` once, prints its message and exits with its ``exit_code``: 2 when the
command line or lab settings are wrong (nothing was started), 1 when a command could not go on.
"""

from __future__ import annotations


class KubelabError(Exception):
    """A command that cannot go on; the message says why and what to do."""

    exit_code = 1


class LabError(KubelabError):
    """A lab command that cannot go on (wrong state, failed step); the message says why and what to do."""
