"""Ansible filter: this node's member in `etcdctl member list -w json`, to recover an interrupted join."""

from __future__ import annotations

import json
from typing import Any


def kubeadm_etcd_member(member_list: str, ip: str) -> dict[str, Any]:
    """The member whose peer URL is this node's (``https://IP:2380``): its hex ID (what `etcdctl member
    remove` takes) and whether it ever started (a started member has a name and client URLs). Empty when the
    cluster has no member for the node."""
    peer = f"https://{ip}:2380"
    for member in json.loads(member_list).get("members") or []:
        if peer in (member.get("peerURLs") or []):
            started = bool(member.get("name")) and bool(member.get("clientURLs"))
            return {"id": format(int(member["ID"]), "x"), "started": started, "learner": bool(member.get("isLearner"))}
    return {}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"kubeadm_etcd_member": kubeadm_etcd_member}
