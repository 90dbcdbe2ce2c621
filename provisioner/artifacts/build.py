"""`kubelab artifacts build`: an artifacts folder made from upstream source, with no registry and no Docker.

Kubernetes, etcd, CoreDNS, the CNI plugins, crictl, containerd, runc and the CNI are built from their Go modules
(gobuild.py), pause from the C source in the kubernetes module; images are assembled in Python (oci.py), with
Debian's packages where they need tools (debpkgs.py). Results are cached under ``~/.cache/kubelab/build`` by what
went into them, and the folder is moved into place only when complete, so a failed build leaves none.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import resource
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

from provisioner import artifacts, buildrecipes, debpkgs, gobuild, gotool, oci, versions
from provisioner.buildrecipes import Component, ImageRecipe
from provisioner.gotool import BuildError, Go
from provisioner.providers.local_state import file_lock

CACHE = Path.home() / ".cache" / "kubelab" / "build"
# Free space a cold build needs: module downloads (~1.5 GB), Go's build cache (~4 GB), results and the folder.
NEEDED_CACHE_BYTES = 8 << 30
NEEDED_OUT_BYTES = 2 << 30
BUILT_CNIS = ("flannel", "none")
# Host tools of the C parts: gcc and a static libc for pause, pkg-config and libseccomp for runc.
HOST_TOOLS = {"gcc": "gcc", "pkg-config": "pkg-config", "strip": "binutils"}
# Why a CNI the lab offers cannot be built here (the folder is refused for it, never faked).
UNBUILDABLE_CNIS = {
    "calico": "Calico's module replaces its own nested modules with local paths and its release tags do not "
    "match the module path; its images are not built yet",
    "cilium": "Cilium's agent needs its eBPF programs compiled with clang and its images are not built yet",
}
PASSWD = "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
PASSWD += "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
GROUP = "root:x:0:\nnonroot:x:65532:\nnogroup:x:65534:\n"
IPTABLES_COMMANDS = tuple(f"{f}{s}" for f in ("iptables", "ip6tables") for s in ("", "-save", "-restore"))
IPTABLES_SELECT = """#!/bin/sh
# kubelab-iptables-select: the first iptables call in this container picks the backend the node uses (the
# one holding more rules, nft when neither has any), points the iptables commands at it and runs itself.
legacy=$( (iptables-legacy-save; ip6tables-legacy-save) 2>/dev/null | grep -c '^-')
nft=$( (iptables-nft-save; ip6tables-nft-save) 2>/dev/null | grep -c '^-')
mode=nft
[ "${legacy:-0}" -gt "${nft:-0}" ] && mode=legacy
for command in COMMANDS; do
  ln -sf "xtables-$mode-multi" "/usr/sbin/$command"
done
exec "$0" "$@"
""".replace("COMMANDS", " ".join(IPTABLES_COMMANDS))


@dataclass(frozen=True)
class BuildRequest:
    kubernetes_version: str  # a minor (newest patch the proxy serves) or an exact patch
    cni: str
    out: Path
    jobs: int = os.cpu_count() or 2
    arch: str = "amd64"
    containerd_version: str = versions.DEFAULT_CONTAINERD
    cache: Path = CACHE


class Reporter:
    """Progress lines with the time since the build started; everything also goes to the build log."""

    def __init__(self, log: Path, printer: Callable[[str], None] = print) -> None:
        self.log, self.printer, self.started = log, printer, time.monotonic()
        self._lock = threading.Lock()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def __call__(self, message: str) -> None:
        minutes, seconds = divmod(int(self.elapsed()), 60)
        line = f"[{minutes:2d}:{seconds:02d}] {message}"
        with self._lock:
            self.printer(line)
            with self.log.open("a") as handle:
                handle.write(line + "\n")


def check_request(request: BuildRequest) -> None:
    """Refuse what cannot be built before any long work starts."""
    if request.cni not in BUILT_CNIS:
        reason = UNBUILDABLE_CNIS.get(request.cni, "kubelab has no recipe for it")
        raise BuildError(
            f"kubelab cannot build the images of cni {request.cni} from source: {reason}. "
            f"Build with --cni {' or --cni '.join(c for c in BUILT_CNIS if c != 'none')} (or none), or fill the "
            f"folder with `kubelab artifacts fetch` on a machine with registry access"
        )
    if request.arch != "amd64":
        raise BuildError(f"kubelab builds amd64 artifacts only (asked for {request.arch})")
    if request.jobs < 1:
        raise BuildError("--jobs must be at least 1")
    missing = missing_host_tools()
    if missing:
        raise BuildError(
            f"the build needs {', '.join(missing)} on this machine: apt-get install {' '.join(missing.values())}"
        )
    for path, needed in ((request.cache, NEEDED_CACHE_BYTES), (request.out.parent, NEEDED_OUT_BYTES)):
        existing = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
        free = shutil.disk_usage(existing).free
        if free < needed:
            raise BuildError(
                f"{existing} has {free / 2**30:.1f} GiB free; the build needs about {needed / 2**30:.0f} GiB there: "
                "free some space or point --out (or HOME, for the caches) elsewhere"
            )


def missing_host_tools() -> dict[str, str]:
    """What the C parts of the build need (pause; runc's seccomp binding), as {what: Debian package}."""
    missing = {tool: package for tool, package in HOST_TOOLS.items() if shutil.which(tool) is None}
    if "pkg-config" not in missing:
        found = subprocess.run(["pkg-config", "--exists", "libseccomp"], check=False).returncode == 0
        if not found or not any(Path(d).glob("libseccomp.a") for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib")):
            missing["libseccomp (static)"] = "libseccomp-dev"
    return missing


def resolve_kubernetes(go: Go, requested: str, scratch: Path) -> str:
    """An exact tag such as v1.36.3: a patch is taken as given, a minor becomes the newest the proxy serves."""
    major, minor, patch = versions.parse_kubernetes_version(requested)
    if patch is not None:
        return f"v{major}.{minor}.{patch}"
    served = gotool.served_versions(go, gobuild.KUBERNETES, scratch)
    newest = gotool.newest_patch(served, f"{major}.{minor}")
    if newest is None:
        raise BuildError(
            f"the Go module proxy serves no release of {gobuild.KUBERNETES} {major}.{minor} "
            f"(it lists {', '.join(served[-6:]) or 'none'}): pick a served version with --k8s-version"
        )
    return newest


def _key(document: object) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build_flags(component: Component, go_version: str) -> str:
    """How a component's programs were built, for artifacts.json."""
    parts = [go_version, "-trimpath", f"CGO_ENABLED={1 if component.cgo else 0}"]
    if component.tags:
        parts.append("-tags=" + ",".join(component.tags))
    parts.append("-ldflags='" + " ".join(("-s", "-w", *component.ldflags)) + "'")
    return " ".join(parts)


def default_name(package: str) -> str:
    """The file name `go build -o DIR/` gives a main package: its last element, a /vN suffix skipped."""
    parts = package.rstrip("/").split("/")
    if len(parts) > 1 and parts[-1][:1] == "v" and parts[-1][1:].isdigit():
        return parts[-2]
    return parts[-1]


class Builder:
    """One build: the checked Go toolchain, the caches, the log and the per-file sources for artifacts.json."""

    def __init__(self, go: Go, request: BuildRequest, report: Reporter) -> None:
        self.go, self.request, self.report = go, request, report
        self.results = request.cache / "results"
        self.work = request.cache / "work"
        for folder in (self.results, self.work):
            folder.mkdir(parents=True, exist_ok=True)

    # --- Go components ----------------------------------------------------------------------------------

    def component(self, component: Component) -> Path:
        """The folder holding the component's programs, built unless the result cache has them."""
        key = _key({"component": asdict(component), "go": self.go.version, "arch": self.request.arch})
        result = self.results / f"{component.name}-{component.version}-{key}"
        if result.is_dir():
            self.report(f"{component.name} {component.version}: cached")
            return result
        started = time.monotonic()
        self.report(f"{component.name} {component.version}: building {len(component.programs)} program(s)")
        try:
            self._build(component, result)
        except BuildError as exc:
            self.report(f"{component.name} {component.version}: FAILED after {time.monotonic() - started:.0f} s")
            raise BuildError(f"{component.name} {component.version}: {exc}") from None
        self.report(f"{component.name} {component.version}: built in {time.monotonic() - started:.0f} s")
        return result

    def _build(self, component: Component, result: Path) -> None:
        with tempfile.TemporaryDirectory(dir=self.work, prefix=f"{component.name}-") as tmp:
            wrapper, out = Path(tmp) / "module", Path(tmp) / "out"
            wrapper.mkdir()
            out.mkdir()
            self._write_wrapper(component, wrapper)
            self.go.run(["mod", "tidy"], cwd=wrapper, log=self.report.log)
            env_cgo = "1" if component.cgo else "0"
            ldflags = " ".join(("-s", "-w", *component.ldflags))
            args = ["build", "-trimpath", "-p", str(self.request.jobs), f"-ldflags=all={ldflags}", "-o", f"{out}/"]
            if component.tags:
                args.insert(1, "-tags=" + ",".join(component.tags))
            go = Go(self.go.binary, self.go.version, {**self.go.env, "CGO_ENABLED": env_cgo})
            go.run([*args, *(p.package for p in component.programs)], cwd=wrapper, log=self.report.log)
            for program in component.programs:
                built = out / default_name(program.package)
                if built.name != program.name:
                    built.rename(out / program.name)
            out.rename(result)

    def _write_wrapper(self, component: Component, wrapper: Path) -> None:
        requirements, go_lines = [], ["1.22"]
        for module in component.modules:
            info = gotool.download(self.go, module, component.version, self.work)
            gomod = json.loads(self.go.run(["mod", "edit", "-json", str(info.gomod)], cwd=self.work))
            requirements.append(gobuild.Requirement(module, component.version, gomod))
            go_lines.append(gobuild.go_directive(gomod))
        need = max(go_lines, key=gotool.version_tuple)
        if not gobuild.go_at_least(self.go.version, need):
            raise BuildError(
                f"{component.source} needs Go {need}; this machine has {self.go.version}: install a newer Go or "
                f"export GOTOOLCHAIN=go{need} (the go command then fetches it from the module proxy)"
            )
        pinned = {module: version for module, version, _ in component.pinned}
        (wrapper / "go.mod").write_text(gobuild.wrapper_gomod(requirements, need, pinned))
        imports = "\n".join(f'\t_ "{program.package}"' for program in component.programs)
        (wrapper / "tools.go").write_text(f"//go:build tools\n\npackage build\n\nimport (\n{imports}\n)\n")

    def module_time(self, module: str, version: str) -> str:
        return gotool.download(self.go, module, version, self.work).time

    def module_dir(self, module: str, version: str) -> Path:
        return gotool.download(self.go, module, version, self.work).dir

    # --- pause (C) --------------------------------------------------------------------------------------

    def pause(self, kubernetes_tag: str, pause_tag: str) -> Path:
        """/pause from build/pause/linux/pause.c of the kubernetes module, static, as its Makefile builds it."""
        source = self.module_dir(gobuild.KUBERNETES, kubernetes_tag) / "build" / "pause" / "linux" / "pause.c"
        gcc = shutil.which("gcc")
        if gcc is None:
            raise BuildError("building the pause image needs gcc: apt-get install gcc libc6-dev")
        gcc_version = subprocess.run([gcc, "-dumpfullversion"], capture_output=True, text=True).stdout.strip()
        key = _key({"pause": hashlib.sha256(source.read_bytes()).hexdigest(), "tag": pause_tag, "gcc": gcc_version})
        result = self.results / f"pause-{pause_tag}-{key}"
        if result.is_dir():
            self.report(f"pause {pause_tag}: cached")
            return result / "pause"
        with tempfile.TemporaryDirectory(dir=self.work, prefix="pause-") as tmp:
            binary = Path(tmp) / "pause"
            argv = [gcc, "-Os", "-Wall", "-Werror", "-static", f"-DVERSION=v{pause_tag}-kubelab", "-o", str(binary)]
            done = subprocess.run([*argv, str(source)], capture_output=True, text=True)
            if done.returncode != 0:
                raise BuildError(f"gcc could not build pause (static needs libc6-dev):\n{done.stderr[-2000:]}")
            subprocess.run(["strip", str(binary)], check=False)
            Path(tmp).rename(result)
        self.report(f"pause {pause_tag}: built with gcc {gcc_version}")
        return result / "pause"

    # --- images -----------------------------------------------------------------------------------------

    def image(self, recipe: ImageRecipe, programs: dict[str, Path], pause: Path | None) -> Path:
        """The OCI archive of ``recipe``, from the result cache when its inputs are unchanged."""
        files: dict[str, Path] = {
            path: programs[component] / name for path, (component, name) in recipe.binaries.items()
        }
        if recipe.pause_source:
            assert pause is not None
            files["pause"] = pause
        closure = debpkgs.closure(list(recipe.debs)) if recipe.debs else []
        inputs = {path: artifacts.sha256_file(file) for path, file in files.items()}
        key = _key({"recipe": asdict(recipe), "inputs": inputs, "debs": closure, "format": 1})
        archive = self.results / "images" / f"{key}.tar"
        if archive.is_file():
            self.report(f"image {recipe.reference}: cached")
            return archive
        started = time.monotonic()
        layers = [self._base_layer()]
        if recipe.shell:
            layers.append(oci.busybox_layer())
        if recipe.debs:
            layers.append(self._deb_layer(recipe))
        modes = dict.fromkeys(files, 0o755)
        if recipe.workdir:
            modes[recipe.workdir.lstrip("/")] = 0o700
        file_layer = oci.layer_from_files(files, modes) if not recipe.caps else self._caps_layer(files, recipe.caps)
        layers.append(file_layer)
        config = oci.ImageConfig(recipe.entrypoint, recipe.cmd, user=recipe.user, workdir=recipe.workdir)
        oci.build_image(archive, recipe.reference, layers, config, self.request.arch)
        self.report(f"image {recipe.reference}: built in {time.monotonic() - started:.0f} s")
        return archive

    @staticmethod
    def _base_layer() -> oci.Layer:
        files: dict[str, bytes | Path] = {"etc/passwd": PASSWD.encode(), "etc/group": GROUP.encode()}
        files["etc/nsswitch.conf"] = b"hosts: files dns\n"
        return oci.layer_from_files(files, {"tmp": 0o1777, "var/lib": 0o755})

    @staticmethod
    def _caps_layer(files: dict[str, Path], caps: dict[str, int]) -> oci.Layer:
        with tempfile.TemporaryDirectory() as tmp:
            for path, source in files.items():
                target = Path(tmp) / path
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
                target.chmod(0o755)
            return oci.layer_from_dir(Path(tmp), caps)

    def _deb_layer(self, recipe: ImageRecipe) -> oci.Layer:
        with tempfile.TemporaryDirectory(dir=self.work, prefix="debs-") as tmp:
            root = Path(tmp)
            unpacked = debpkgs.unpack(list(recipe.debs), root)
            with self.report.log.open("a") as handle:
                handle.write(f"{recipe.reference}: Debian packages {' '.join(unpacked)}\n")
            if recipe.iptables:
                select = root / "usr/sbin/kubelab-iptables-select"
                select.write_text(IPTABLES_SELECT)
                select.chmod(0o755)
                debpkgs.alternatives(root, {f"usr/sbin/{c}": "kubelab-iptables-select" for c in IPTABLES_COMMANDS})
            for folder in ("bin", "sbin", "lib", "lib64"):  # Debian 12 is merged-/usr: /bin -> usr/bin
                if (root / "usr" / folder).is_dir() and not (root / folder).exists():
                    (root / folder).symlink_to(f"usr/{folder}")
            if (root / "bin").is_symlink():  # busybox's layer brings /bin as a folder: keep its applets
                (root / "bin").unlink()
            return oci.layer_from_dir(root)


# ---------------------------------------------------------------------------------------------------------
# Packing files in the folder's layout
# ---------------------------------------------------------------------------------------------------------


def _tar(target: Path, members: dict[str, Path], gz: bool = True) -> None:
    """A reproducible tarball of ``members`` (name in the archive -> file), all 0755 root-owned files; the gzip
    header holds no time or name either, so a rebuild gives the same bytes (and the node images the same key)."""
    with (
        target.open("wb") as raw,
        gzip.GzipFile("", "wb", fileobj=raw, mtime=0) if gz else nullcontext(raw) as out,
        tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name, source in sorted(members.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = source.stat().st_size, 0o755, 0
            with source.open("rb") as handle:
                tar.addfile(info, handle)


def _place(source: Path, target: Path) -> None:
    """Hard-link a cached file into the folder (a copy across file systems)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


@dataclass
class BuildResult:
    folder: Path
    kubernetes_version: str
    seconds: float
    peak_rss_mib: float
    log: Path


def build(request: BuildRequest, printer: Callable[[str], None] = print) -> BuildResult:
    """Build the whole folder for ``request``; see the module docstring."""
    check_request(request)
    go = gotool.find_go(request.cache.parent / "go", jobs=request.jobs)
    logs = request.cache / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"build-{time.strftime('%Y%m%d-%H%M%S')}.log"
    report = Reporter(log, printer)
    report(f"building an artifacts folder with {go.version} ({go.binary}); full log: {log}")
    builder = Builder(go, request, report)
    tag = resolve_kubernetes(go, request.kubernetes_version, builder.work)
    version = tag.lstrip("v")
    report(f"Kubernetes {tag}, cni {request.cni}, {request.jobs} parallel job(s)")
    kubernetes = buildrecipes.kubernetes(tag, builder.module_time(gobuild.KUBERNETES, tag))
    metrics_version = versions.ADDON_VERSIONS["metrics-server"]
    metrics_module_time = builder.module_time(buildrecipes.METRICS_SERVER_MODULE, metrics_version)
    metrics_server = buildrecipes.metrics_server(metrics_version, metrics_module_time)
    traefik_version = versions.ADDON_VERSIONS["ingress"]
    traefik_module_time = builder.module_time(buildrecipes.TRAEFIK_MODULE, traefik_version)
    independent = [
        buildrecipes.cni_plugins(),
        buildrecipes.cri_tools(),
        buildrecipes.containerd(request.containerd_version),
        buildrecipes.runc(versions.RUNC_VERSION),
        buildrecipes.kube_vip(versions.KUBE_VIP_VERSION),  # small: every folder serves --lb kube-vip too
        metrics_server,  # every folder serves every add-on too
        buildrecipes.metallb(versions.ADDON_VERSIONS["lb-services"]),
        buildrecipes.traefik(traefik_version, traefik_module_time),
    ]
    if request.cni == "flannel":
        independent += [buildrecipes.flannel(versions.CNI_VERSIONS["flannel"]), buildrecipes.flannel_cni_plugin()]
    sources: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=request.jobs) as pool:
        later = {c.name: pool.submit(builder.component, c) for c in independent}
        programs = {"kubernetes": builder.component(kubernetes)}
        images = kubeadm_image_list(programs["kubernetes"] / "kubeadm", tag)
        report(f"kubeadm {tag} expects: {', '.join(images)}")
        pinned = buildrecipes.pinned_tags(images)
        pinned_components = [buildrecipes.etcd(pinned.etcd), buildrecipes.coredns(pinned.coredns)]
        later |= {c.name: pool.submit(builder.component, c) for c in pinned_components}
        pause = builder.pause(tag, pinned.pause)
        programs |= {name: future.result() for name, future in later.items()}
    components = {c.name: c for c in [kubernetes, *independent, *pinned_components]}
    recipes = buildrecipes.kubeadm_image_recipes(images)
    agnhost_dir = builder.module_dir(gobuild.KUBERNETES, tag) / buildrecipes.AGNHOST_PACKAGE
    recipes.append(buildrecipes.agnhost_recipe((agnhost_dir / "VERSION").read_text().strip()))
    recipes.append(buildrecipes.kube_vip_recipe(versions.KUBE_VIP_VERSION))
    recipes.append(buildrecipes.metrics_server_recipe(metrics_version))
    metallb_version = versions.ADDON_VERSIONS["lb-services"]
    recipes += buildrecipes.metallb_recipes(metallb_version)
    recipes.append(buildrecipes.traefik_recipe(traefik_version))
    metallb_source = builder.module_dir(buildrecipes.METALLB_MODULE, metallb_version) / buildrecipes.METALLB_MANIFEST
    manifests = [
        FolderManifest(
            artifacts.ADDON_MANIFESTS["lb-services"][0],
            metallb_source.read_text(),
            metallb_version,
            f"{buildrecipes.METALLB_MODULE}@{metallb_version} {buildrecipes.METALLB_MANIFEST}",
        )
    ]
    if request.cni == "flannel":
        flannel_tag = versions.CNI_VERSIONS["flannel"]
        plugin_version = buildrecipes.FLANNEL_CNI_PLUGIN[1]
        upstream = builder.module_dir("github.com/flannel-io/flannel", flannel_tag) / "Documentation/kube-flannel.yml"
        manifest_text = buildrecipes.flannel_manifest(upstream.read_text(), plugin_version)
        flannel_images = artifacts.manifest_images(manifest_text)
        flannel_ref = next(ref for ref in flannel_images if "/flannel:" in ref)
        recipes += buildrecipes.flannel_image_recipes(flannel_ref, plugin_version)
        manifests.append(
            FolderManifest(
                artifacts.cni_manifest("flannel")[0],  # type: ignore[index]
                manifest_text,
                flannel_tag,
                f"github.com/flannel-io/flannel@{flannel_tag} Documentation/kube-flannel.yml, flannel-cni-plugin image "
                f"replaced by {buildrecipes.flannel_cni_plugin_reference(plugin_version)}",
            )
        )
    image_archives = {recipe.reference: builder.image(recipe, programs, pause) for recipe in recipes}
    for recipe in recipes:
        parts = {components[c].source for c, _ in recipe.binaries.values()}
        if recipe.pause_source:
            parts.add(f"{gobuild.KUBERNETES}@{tag} build/pause/linux/pause.c (gcc -static)")
        if recipe.debs:
            parts.add(f"Debian packages {' '.join(recipe.debs)} with their dependencies")
        sources[artifacts.image_archive_name(recipe.reference)] = "; ".join(sorted(parts))

    report("assembling the folder")
    out = request.out.expanduser().resolve()
    staging = out.with_name(f".{out.name}.building")
    # Two builds into one folder take turns: each has the staging folder and the final move to itself.
    with file_lock(out.with_name(f".{out.name}.lock")):
        folder = Folder(request, tag, programs, components, image_archives, sources, recipes, manifests, go)
        _stage_and_move(folder, out, staging)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    seconds = report.elapsed()
    report(f"artifacts folder {out} is complete: {seconds:.0f} s, peak memory of one build process {peak:.0f} MiB")
    return BuildResult(out, version, seconds, peak, log)


@dataclass(frozen=True)
class FolderManifest:
    """A manifest the folder holds under manifests/: its text, the version of what it installs, and its source."""

    name: str
    text: str
    version: str
    source: str


@dataclass
class Folder:
    """Everything the folder is assembled from, once every component and image is built."""

    request: BuildRequest
    tag: str
    programs: dict[str, Path]
    components: dict[str, Component]
    image_archives: dict[str, Path]
    sources: dict[str, str]
    recipes: list[ImageRecipe]
    manifests: list[FolderManifest]
    go: Go


def _stage_and_move(folder: Folder, out: Path, staging: Path) -> None:
    """Lay the folder out in ``staging``, write artifacts.json, then move it to ``out``; no half-written folder
    is left behind when anything fails."""
    request, components, sources = folder.request, folder.components, folder.sources
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        entries = _assemble(staging, request, folder.tag, folder.programs, components, folder.image_archives, sources)
        built_by = {f"bin/{name}": "kubernetes" for name in artifacts.KUBE_BINARIES} | {
            "bin/crictl": "cri-tools",
            f"containerd/runc.{request.arch}": "runc",
        }
        built_by |= {
            path: name for kind, path, name, _ in entries if kind in ("tarball", "containerd") and name in components
        }
        for manifest in folder.manifests:
            target = staging / "manifests" / manifest.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(manifest.text)
            sources[f"manifests/{manifest.name}"] = manifest.source
            entries.append(("manifest", f"manifests/{manifest.name}", manifest.name, manifest.version))
        flags = {path: build_flags(components[component], folder.go.version) for path, component in built_by.items()}
        for recipe in folder.recipes:
            flags[artifacts.image_archive_name(recipe.reference)] = (
                "OCI image assembled by kubelab (provisioner/oci.py) from the programs built as their own entries say"
            )
        _write_build_manifest(staging, request, folder.tag.lstrip("v"), entries, sources, flags, folder.go)
        _replace_folder(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def kubeadm_image_list(kubeadm: Path, tag: str) -> list[str]:
    """The images the built kubeadm names for ``tag``: the authority on pause, etcd and CoreDNS."""
    argv = [str(kubeadm), "config", "images", "list", "--kubernetes-version", tag]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise BuildError(f"the built kubeadm could not list its images: {done.stderr.strip()}")
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def _assemble(
    staging: Path,
    request: BuildRequest,
    tag: str,
    programs: dict[str, Path],
    components: dict[str, Component],
    image_archives: dict[str, Path],
    sources: dict[str, str],
) -> list[tuple[str, str, str, str]]:
    """Lay the results out as `kubelab up --artifacts` reads them; (kind, path, name, version) per file."""
    arch = request.arch
    entries: list[tuple[str, str, str, str]] = []
    for name in artifacts.KUBE_BINARIES:
        _place(programs["kubernetes"] / name, staging / "bin" / name)
        entries.append(("binary", f"bin/{name}", name, tag))
        sources[f"bin/{name}"] = components["kubernetes"].source
    _place(programs["cri-tools"] / "crictl", staging / "bin" / "crictl")
    entries.append(("binary", "bin/crictl", "crictl", components["cri-tools"].version))
    sources["bin/crictl"] = components["cri-tools"].source
    plugins = components["cni-plugins"]
    cni = f"cni/cni-plugins-linux-{arch}-{plugins.version}.tgz"
    (staging / "cni").mkdir()
    _tar(staging / cni, {f"./{p.name}": programs["cni-plugins"] / p.name for p in plugins.programs})
    entries.append(("tarball", cni, "cni-plugins", plugins.version))
    sources[cni] = plugins.source
    containerd = components["containerd"]
    bare = containerd.version.lstrip("v")
    tarball = f"containerd/containerd-{bare}-linux-{arch}.tar.gz"
    (staging / "containerd").mkdir()
    _tar(staging / tarball, {f"bin/{p.name}": programs["containerd"] / p.name for p in containerd.programs})
    entries.append(("containerd", tarball, "containerd", bare))
    sources[tarball] = containerd.source
    runc = components["runc"]
    _place(programs["runc"] / "runc", staging / "containerd" / f"runc.{arch}")
    entries.append(("containerd", f"containerd/runc.{arch}", "runc", runc.version.lstrip("v")))
    sources[f"containerd/runc.{arch}"] = runc.source + " (cgo, static, seccomp from Debian's libseccomp-dev)"
    for reference, archive in image_archives.items():
        path = artifacts.image_archive_name(reference)
        _place(archive, staging / path)
        entries.append(("image", path, reference, reference.rsplit(":", 1)[-1]))
    return entries


def _write_build_manifest(
    folder: Path,
    request: BuildRequest,
    version: str,
    entries: list[tuple[str, str, str, str]],
    sources: dict[str, str],
    flags: dict[str, str],
    go: Go,
) -> None:
    listed = []
    for kind, path, name, file_version in entries:
        entry = {"path": path, "kind": kind, "name": name, "version": file_version}
        entry["sha256"] = artifacts.sha256_file(folder / path)
        entry["source"] = sources.get(path, "")
        entry["built_with"] = flags.get(path, "")
        if kind == "image":
            entry["digest"] = artifacts.archive_digest(folder / path) or ""
        listed.append({k: v for k, v in entry.items() if v})
    document = artifacts.manifest_document(version, request.arch, "bin", request.cni, listed)
    document["built"] = {"by": "kubelab artifacts build", "go": go.version}
    (folder / artifacts.MANIFEST).write_text(json.dumps(document, indent=2) + "\n")


def _replace_folder(staging: Path, out: Path) -> None:
    """Move the finished folder to ``out``; an earlier folder there is removed only once the new one is in place."""
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        if not (out / artifacts.MANIFEST).is_file() and any(out.iterdir()):
            raise BuildError(f"{out} exists and is not an artifacts folder: choose another --out")
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def describe_sizes(folder: Path) -> str:
    """One line per top-level folder with its size, for the end of a build."""
    lines = io.StringIO()
    for child in sorted(folder.iterdir()):
        size = (
            sum(f.stat().st_size for f in child.rglob("*") if f.is_file()) if child.is_dir() else child.stat().st_size
        )
        lines.write(f"  {child.name:<16} {size / 2**20:8.1f} MiB\n")
    return lines.getvalue().rstrip()
