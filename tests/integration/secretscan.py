"""Find secrets a lab run leaked: into logs, state files or console output, or into files others can read.

A secret *holder* is a file whose job is to keep one (a private key, the keepalived secret, a kubeconfig with
client-key-data): it must be 0600. Every other file, and the captured console output, must contain none of the
secrets' values, no PEM private key, no kubeadm join token and no kubeadm certificate key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

PEM_KEY = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
CLIENT_KEY = re.compile(rb"client-key-data:\s*(\S{40,})")
JOIN_TOKEN = re.compile(r"\b[a-z0-9]{6}\.[a-z0-9]{16}\b")
CERTIFICATE_KEY = re.compile(r"(?i)certificate[-_ ]?key\W{1,4}[0-9a-f]{64}\b")
KEEPALIVED_SECRET_FILE = Path("secrets") / "keepalived-auth"
# A `local` node's disks inside the lab folder: the machine's own files, not kubelab's logs or state.
NODE_DISKS = re.compile(r"(^|/)local/nodes/[^/]+/(upper|work|root|var-lib)(/|$)")
MAX_BYTES = 20 * 1024 * 1024


@dataclass
class Scan:
    """What a scan found: the holders with their modes, and every leak as 'where: what'."""

    holders: dict[Path, int] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)  # label -> value
    leaks: list[str] = field(default_factory=list)


def scanned_files(home: Path) -> list[Path]:
    """Every regular file under `home` but the nodes' own disks (followed symlinks are not)."""
    files = []
    for path in sorted(home.rglob("*")):
        relative = path.relative_to(home).as_posix()
        if NODE_DISKS.search(relative) or path.is_symlink() or not path.is_file():
            continue
        files.append(path)
    return files


def _pem_body_lines(data: bytes) -> list[str]:
    """The base64 lines of every PEM private key in `data` (each one is key material)."""
    text = data.decode("latin-1")
    blocks = re.findall(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(.*?)-----END", text, re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if len(line.strip()) >= 40]


def scan(home: Path, console: str = "") -> Scan:
    """Scan every file under `home` (a KUBELAB_HOME or a lab folder) and the console text."""
    result = Scan()
    contents = {path: path.read_bytes() for path in scanned_files(home) if path.stat().st_size <= MAX_BYTES}
    for path, data in contents.items():
        if path.as_posix().endswith(KEEPALIVED_SECRET_FILE.as_posix()):
            value = data.decode("latin-1").split()[0] if data.split() else ""
            if value:
                result.secrets[f"keepalived secret ({path.name})"] = value
            result.holders[path] = path.stat().st_mode & 0o777
        if PEM_KEY.search(data):
            for number, line in enumerate(_pem_body_lines(data)):
                result.secrets[f"private key of {path.name} (line {number + 1})"] = line
            result.holders[path] = path.stat().st_mode & 0o777
        for number, match in enumerate(CLIENT_KEY.finditer(data)):
            result.secrets[f"client key of {path.name} ({number + 1})"] = match.group(1).decode("latin-1")
            result.holders[path] = path.stat().st_mode & 0o777
    for path, mode in result.holders.items():
        if mode & 0o077:
            result.leaks.append(f"{path}: holds a secret but has mode {mode:04o}, not 0600")
    texts = {str(p): data.decode("utf-8", "replace") for p, data in contents.items() if p not in result.holders}
    texts["console output"] = console
    for where, text in texts.items():
        result.leaks += [f"{where}: contains the {label}" for label, value in result.secrets.items() if value in text]
        if PEM_KEY.search(text.encode("utf-8", "replace")):
            result.leaks.append(f"{where}: contains a PEM private key")
        result.leaks += [f"{where}: contains a join token {m[:6]}.****" for m in JOIN_TOKEN.findall(text)]
        if CERTIFICATE_KEY.search(text):
            result.leaks.append(f"{where}: contains a kubeadm certificate key")
    return result
