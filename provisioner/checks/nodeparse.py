"""Parsers for what the node and load-balancer checks read on a node. Pure functions, unit-tested."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass

# Where the runc options live in `containerd config dump`: config v3/v4 (containerd 2.x), config v2 (1.x).
CRI_RUNTIME_TABLES: tuple[tuple[str, ...], ...] = (
    ("plugins", "io.containerd.cri.v1.runtime", "containerd"),
    ("plugins", "io.containerd.grpc.v1.cri", "containerd"),
)
CRI_PLUGIN_IDS: tuple[str, ...] = ("io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime", "cri")


def active_swaps(proc_swaps: str) -> list[str]:
    """Swap devices/files in use, from /proc/swaps (the first line is a header)."""
    return [line.split()[0] for line in proc_swaps.splitlines()[1:] if line.strip()]


def fstab_swap_entries(fstab: str) -> list[str]:
    """Uncommented fstab lines that mount swap (type `swap`), which would turn it back on at boot."""
    entries = []
    for line in fstab.splitlines():
        fields = line.split()
        if fields and not fields[0].startswith("#") and len(fields) >= 3 and fields[2] == "swap":
            entries.append(line.strip())
    return entries


@dataclass(frozen=True)
class CgroupSetting:
    """SystemdCgroup of containerd's default CRI runtime, as containerd itself reports its effective config."""

    value: bool | None  # None: the key is absent, containerd uses its default (false)
    table: str  # the TOML table it was read from
    runtime: str


def containerd_systemd_cgroup(config_dump: str) -> CgroupSetting:
    """Read SystemdCgroup of the default runtime from `containerd config dump` (1.x and 2.x layouts).
    Raises ValueError when the CRI plugin is disabled or no CRI runtime table is present."""
    config = tomllib.loads(config_dump)
    disabled = set(config.get("disabled_plugins") or [])
    if disabled & set(CRI_PLUGIN_IDS):
        raise ValueError(f"the CRI plugin is disabled (disabled_plugins = {sorted(disabled)})")
    for path in CRI_RUNTIME_TABLES:
        table = config
        for key in path:
            table = table.get(key) if isinstance(table, dict) else None
        if not isinstance(table, dict):
            continue
        runtime = str(table.get("default_runtime_name") or "runc")
        options = ((table.get("runtimes") or {}).get(runtime) or {}).get("options") or {}
        where = f'plugins."{path[1]}".' + ".".join(path[2:]) + f".runtimes.{runtime}.options"
        value = options.get("SystemdCgroup")
        return CgroupSetting(value=None if value is None else bool(value), table=where, runtime=runtime)
    raise ValueError("no CRI runtime table in the effective config (neither containerd 1.x nor 2.x layout)")


@dataclass(frozen=True)
class Listener:
    address: str
    port: int
    process: str


def tcp_listeners(ss_output: str) -> list[Listener]:
    """Listening TCP sockets from `ss -Htlnp` (no header): local address, port and owning process names."""
    listeners = []
    for line in ss_output.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[0] != "LISTEN":
            continue
        address, _, port = fields[3].rpartition(":")
        names = sorted(set(re.findall(r'\("([^"]+)",pid=', " ".join(fields[5:]))))
        listeners.append(Listener(address=address.strip("[]").split("%")[0], port=int(port), process=",".join(names)))
    return listeners


WILDCARDS = frozenset({"0.0.0.0", "*", "::"})


def listens_on(listeners: list[Listener], address: str, port: int) -> list[Listener]:
    """Listeners that accept connections to address:port (bound to it or to a wildcard)."""
    return [lst for lst in listeners if lst.port == port and (lst.address == address or lst.address in WILDCARDS)]


def haproxy_sections(config: str) -> dict[str, dict[str, list[str]]]:
    """haproxy.cfg -> {"frontend NAME"|"backend NAME"|"listen NAME": {"bind": [...], "server": [addr:port]}}."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in config.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        words = line.split()
        if not raw[0].isspace():
            kind = words[0]
            current = sections.setdefault(f"{kind} {words[1]}" if len(words) > 1 else kind, {"bind": [], "server": []})
            if kind == "listen" and len(words) > 2:
                current["bind"].append(words[2])
            continue
        if current is None:
            continue
        if words[0] == "bind" and len(words) > 1:
            current["bind"].append(words[1])
        elif words[0] == "server" and len(words) > 2:
            current["server"].append(words[2])
    return sections


def haproxy_servers(config: str) -> set[str]:
    """Every `server` address:port of the backend and listen sections."""
    return {
        server
        for name, section in haproxy_sections(config).items()
        if name.split()[0] in ("backend", "listen")
        for server in section["server"]
    }


def ipv4_addresses(ip_json: str) -> dict[str, set[str]]:
    """`ip -j -4 addr show` -> interface name -> its IPv4 addresses."""
    result: dict[str, set[str]] = {}
    for link in json.loads(ip_json or "[]"):
        for info in link.get("addr_info", []):
            if info.get("family", "inet") == "inet" and "local" in info:
                result.setdefault(link.get("ifname", "?"), set()).add(info["local"])
    return result


def kubelet_flag(cmdline: bytes | str, flag: str) -> str | None:
    """The value of `--flag=value` or `--flag value` on a process command line (/proc/PID/cmdline or ps output)."""
    text = cmdline.decode() if isinstance(cmdline, bytes) else cmdline
    args = text.split("\0") if "\0" in text else shlex.split(text)
    for index, arg in enumerate(args):
        if arg.startswith(f"--{flag}="):
            return arg.split("=", 1)[1]
        if arg == f"--{flag}" and index + 1 < len(args):
            return args[index + 1]
    return None


def dpkg_versions(output: str) -> dict[str, str]:
    """`dpkg-query -W -f='${Package} ${Version} ${db:Status-Status}\\n' PKG...` -> installed package -> version."""
    versions = {}
    for line in output.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "installed":
            versions[fields[0]] = fields[1]
    return versions


def version_matches(installed: str, wanted: str) -> bool:
    """Does a Debian package version (e.g. 1.36.4-1.1) carry the wanted Kubernetes minor (1.36) or patch (1.36.4)?"""
    upstream = installed.split(":", 1)[-1].split("-", 1)[0]
    return upstream == wanted or upstream.startswith(wanted + ".") if wanted.count(".") == 1 else upstream == wanted


def kubectl_client_version(version_json: str) -> str:
    """gitVersion from `kubectl version --client -o json` (empty when it printed no JSON)."""
    try:
        return str((json.loads(version_json).get("clientVersion") or {}).get("gitVersion", ""))
    except ValueError:
        return ""


def crictl_runtime_ready(info_json: str) -> tuple[bool, str]:
    """`crictl info` -> (RuntimeReady, a short description of the runtime conditions)."""
    conditions = (json.loads(info_json).get("status") or {}).get("conditions") or []
    states = {c.get("type"): c for c in conditions}
    ready = states.get("RuntimeReady", {})
    summary = ", ".join(
        f"{c.get('type')}={c.get('status')}" + (f" ({c['reason']})" if c.get("reason") else "") for c in conditions
    )
    return bool(ready.get("status")), summary or "no runtime conditions reported"


def key_values(text: str) -> dict[str, str]:
    """KEY=VALUE lines (e.g. `timedatectl show`, `systemctl show`) -> dict."""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
