"""Ansible filters: the join secrets in kubeadm's output (never logged: the tasks using them are no_log)."""

from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(r"--token\s+([a-z0-9]{6}\.[a-z0-9]{16})\b")
_CA_HASH = re.compile(r"--discovery-token-ca-cert-hash\s+(sha256:[0-9a-f]{64})\b")
# Newer kubeadm prints the key on the line after "Using certificate key:", some versions on the same line.
_CERT_KEY = re.compile(r"(?:^|Using certificate key:[ \t]*)([0-9a-f]{64})$", re.MULTILINE)


def kubeadm_join_secrets(output: str) -> dict[str, str]:
    """Token and CA hash from `kubeadm token create --print-join-command`."""
    token, ca_hash = _TOKEN.search(output), _CA_HASH.search(output)
    if not token or not ca_hash:
        # The output holds the token: say what is missing, never echo it.
        raise ValueError("`kubeadm token create --print-join-command` printed no --token and CA hash")
    return {"token": token.group(1), "ca_cert_hash": ca_hash.group(1)}


def kubeadm_certificate_key(output: str) -> str:
    """The key `kubeadm init phase upload-certs --upload-certs` printed (its last 64-hex-digit line)."""
    keys = _CERT_KEY.findall(output)
    if not keys:
        raise ValueError("`kubeadm init phase upload-certs --upload-certs` printed no certificate key")
    return keys[-1]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"kubeadm_join_secrets": kubeadm_join_secrets, "kubeadm_certificate_key": kubeadm_certificate_key}
