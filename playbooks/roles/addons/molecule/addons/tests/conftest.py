"""kubelab's check plugin (lab facts, node selection by group and phase) for this scenario's testinfra run."""

from provisioner.checks.conftest import *  # noqa: F403
