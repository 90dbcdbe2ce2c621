"""Child processes that do not outlive kubelab: a killed `kubelab up` must not leave Ansible or Vagrant
working on a lab whose lock it no longer holds."""

from __future__ import annotations

import ctypes
import signal
import sys

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent() -> None:
    """`preexec_fn` for subprocess: the child gets SIGTERM when the kubelab process dies (Linux; elsewhere
    a no-op)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
