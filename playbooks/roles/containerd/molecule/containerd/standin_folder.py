"""Write an artifacts folder holding one containerd 2.x tarball in the upstream release's layout (bin/...).

No containerd release can be downloaded here, so the tarball is a stand-in made from Debian sid's containerd
package (2.x; it runs on bookworm). Usage: standin_folder.py OUT; prints the containerd version it holds.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import re
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

MIRROR = "http://deb.debian.org/debian"


def sid_deb(package: str, dest: Path) -> Path:
    """Download `package`'s amd64 .deb from Debian sid into `dest`."""
    with urllib.request.urlopen(f"{MIRROR}/dists/sid/main/binary-amd64/Packages.xz", timeout=120) as response:
        index = lzma.decompress(response.read()).decode()
    stanza = next(s for s in index.split("\n\n") if s.startswith(f"Package: {package}\n"))
    filename = re.search(r"^Filename: (\S+)$", stanza, re.M)
    if filename is None:
        raise SystemExit(f"sid's index names no file for {package}")
    path = dest / Path(filename.group(1)).name
    urllib.request.urlretrieve(f"{MIRROR}/{filename.group(1)}", path)
    return path


def write_folder(out: Path) -> str:
    with tempfile.TemporaryDirectory() as work:
        deb = sid_deb("containerd", Path(work))
        unpacked = Path(work) / "unpacked"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
        version = re.search(r"_(\d+\.\d+\.\d+)", deb.name).group(1)  # type: ignore[union-attr]
        tarball = out / "containerd" / f"containerd-{version}-linux-amd64.tar.gz"
        tarball.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball, "w:gz") as tar:
            for name in ("containerd", "containerd-shim-runc-v2", "ctr"):
                tar.add(unpacked / "usr" / "bin" / name, arcname=f"bin/{name}")
    entry = {
        "path": str(tarball.relative_to(out)),
        "kind": "containerd",
        "name": "containerd",
        "version": version,
        "sha256": hashlib.sha256(tarball.read_bytes()).hexdigest(),
    }
    (out / "artifacts.json").write_text(json.dumps({"artifacts": [entry]}))
    return version


if __name__ == "__main__":
    print(write_folder(Path(sys.argv[1])))
