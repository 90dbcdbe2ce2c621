"""Pick a provider when the user did not: libvirt or VirtualBox through Vagrant, whichever works here.

`local` and `hosts` are never picked automatically: they must be asked for.
"""

from __future__ import annotations

import shutil

from provisioner.providers.base import ProviderError
from provisioner.providers.vagrant import INSTALL_HINTS, installed_plugins, provider_problem

CANDIDATES = ("libvirt", "virtualbox")


def detect_provider() -> str:
    """The first usable provider of CANDIDATES; ProviderError listing what to install when there is none."""
    if not shutil.which("vagrant"):
        raise ProviderError(
            "no provider found: Vagrant is not installed. "
            + INSTALL_HINTS["vagrant"]
            + ", then either libvirt ("
            + INSTALL_HINTS["libvirt"]
            + ") or VirtualBox ("
            + INSTALL_HINTS["virtualbox"]
            + "). Or run nodes without VMs: --provider local (Linux, root) or --provider hosts -i INVENTORY"
        )
    plugins = installed_plugins()
    problems = []
    for provider in CANDIDATES:
        problem = provider_problem(provider, plugins)
        if problem is None:
            return provider
        problems.append(f"  {provider}: {problem}")
    raise ProviderError(
        "no usable provider for Vagrant:\n"
        + "\n".join(problems)
        + "\n  or pass --provider local (Linux, root) or --provider hosts -i INVENTORY"
    )
