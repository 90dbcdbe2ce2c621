"""Ansible filter: kubeadm output with its secrets masked, fit to show when `kubeadm init` fails."""

from __future__ import annotations

import re
from typing import Any

# Bootstrap tokens ("[bootstrap-token] Using token: ...") and 32-byte hex keys (the certificate key);
# CA certificate hashes (sha256:...) are public and stay.
_TOKEN = re.compile(r"\b[a-z0-9]{6}\.[a-z0-9]{16}\b")
_HEX_KEY = re.compile(r"(?<!sha256:)\b[0-9a-f]{64}\b")


def control_plane_redact(text: str) -> str:
    return _HEX_KEY.sub("<certificate key>", _TOKEN.sub("<token>", str(text)))


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"control_plane_redact": control_plane_redact}
