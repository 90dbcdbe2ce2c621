"""Baking a node image: one throw-away local node runs the node-level phases, then its layer becomes the image."""

from __future__ import annotations

import io
import ipaddress
import time
from collections.abc import Callable
from typing import TextIO

from provisioner import node_image
from provisioner.errors import KubelabError
from provisioner.lab import LabDir
from provisioner.node_image import NodeImage
from provisioner.spec import LabSpec

BAKE_NODE = "master-1"


class ImageError(KubelabError):
    """A node image could not be built."""


class ProgressLines(io.TextIOBase):
    """A text stream that hands each finished line to a callback (a phase's progress line)."""

    def __init__(self, report: Callable[[str], None]) -> None:
        self._report = report
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self._pending = (self._pending + text).split("\n")
        for line in lines:
            if line.strip():
                self._report(line.strip())
        return len(text)


def free_subnet(first: int) -> str:
    """The first 10.77.X.0/24 from X = first on (wrapping) that the host routes nowhere: a bake may run while other
    labs exist, e.g. `node add` after an upgrade."""
    from provisioner.providers.local_network import routed_networks

    routed = [network for network, _dst, _dev in routed_networks()]
    for step in range(250):
        subnet = ipaddress.IPv4Network(f"10.77.{(first - 1 + step) % 250 + 1}.0/24")
        if not any(subnet.overlaps(network) for network in routed):
            return str(subnet)
    raise ImageError("no free 10.77.X.0/24 subnet for the node image's throw-away node: destroy a lab first")


def bake_spec(spec: LabSpec, image: NodeImage, subnet: str) -> LabSpec:
    """The throw-away lab: one master of the spec's OS and versions, named after the image's key."""
    from provisioner import spec as spec_mod

    return spec_mod.resolve(
        spec.replace(
            name="img-" + image.key,
            masters=1,
            workers=0,
            lb="none",
            node_subnet=subnet,
            vip="auto",
            mtu=None,
            no_image=True,
            strict=False,
        )
    )


def build(image: NodeImage, spec: LabSpec, arch: str, out: TextIO) -> NodeImage:
    """Build `image` for `spec` unless it is cached; one builder at a time, others wait and reuse its result."""
    from provisioner.cache import write_lab_vars
    from provisioner.lifecycle import run_phases
    from provisioner.plan import make_plan
    from provisioner.providers.local import LocalProvider
    from provisioner.providers.local_image import remove_tree
    from provisioner.providers.local_state import file_lock
    from provisioner.render import write_lab

    with file_lock(image.path.with_name(image.name + ".lock")):
        if image.built:
            return image
        started = time.monotonic()
        work = image.path.with_name(f".build-{image.name}")
        lab = LabDir(work / "lab")
        plan = make_plan(bake_spec(spec, image, free_subnet(int(image.key, 16) % 250 + 1)), arch=arch)
        provider = LocalProvider(plan, lab)
        if work.exists():  # a build that was killed: its node may still run
            provider.destroy()
            remove_tree(work)
        write_lab(plan, lab)
        write_lab_vars(lab, "local", plan.spec.node_subnet)  # the host's apt cache, if it runs (offline hosts)
        print(f"baking node image {image.name} on one throw-away node ({', '.join(node_image.BAKED_PHASES)})", file=out)
        try:
            if run_phases(lab, plan, provider, None, node_image.BAKED_PHASES[-1], out) != 0:
                raise ImageError(f"node image {image.name} was not built: a phase failed on its throw-away node")
            provider.halt()
            files = provider.node_files(BAKE_NODE)
            staged = NodeImage(work / "image")
            staged.path.mkdir()
            node_image.strip_node_identity(files.upper)
            files.upper.rename(staged.layer)
            containerd = files.host_dir("containerd")
            for rel in node_image.CONTAINERD_PER_NODE:
                (containerd / rel).unlink(missing_ok=True)
            containerd.rename(staged.containerd)
            node_image.write_info(staged, spec, arch, time.monotonic() - started)
            staged.path.rename(image.path)
        finally:
            provider.destroy()
            remove_tree(work)
    size = node_image.folder_bytes(image.path) / 1e6
    print(f"node image {image.name}: {size:.0f} MB, built in {time.monotonic() - started:.0f} s", file=out)
    return image
