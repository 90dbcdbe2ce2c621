"""Building upstream programs from Go modules: the wrapper module and the version stamps.

Modules such as ``k8s.io/kubernetes`` replace their siblings with relative paths, and replaces apply only in the
main module; so kubelab builds from a generated wrapper module that requires the component, replaces each
sibling with its published version and states again the component's replaces by other modules (forks, as
Traefik's). The functions are pure: ``go mod edit -json`` output in, text out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

WRAPPER_MODULE = "kubelab.local/build"
KUBERNETES = "k8s.io/kubernetes"
VERSION_PACKAGES = ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")


@dataclass(frozen=True)
class Requirement:
    """One module the wrapper requires, with its go.mod as ``go mod edit -json`` prints it."""

    path: str
    version: str
    gomod: Mapping[str, object]


def sibling_version(module: str, version: str) -> str:
    """The published version of a sibling module: Kubernetes' staging modules are v0.Y.Z for vX.Y.Z, other
    projects tag their siblings with the main module's version."""
    if module == KUBERNETES:
        _, minor, patch = version.lstrip("v").split(".")
        return f"v0.{minor}.{patch}"
    return version


def sibling_replaces(requirement: Requirement) -> dict[str, str]:
    """Module -> published version for every required module the component replaces with a local path."""
    required = {str(entry["Path"]) for entry in _entries(requirement.gomod, "Require")}
    found: dict[str, str] = {}
    for entry in _entries(requirement.gomod, "Replace"):
        old, new = entry.get("Old") or {}, entry.get("New") or {}
        target = str(new.get("Path", ""))  # type: ignore[union-attr]
        module = str(old.get("Path", ""))  # type: ignore[union-attr]
        if target.startswith(".") and module in required:
            found[module] = sibling_version(requirement.path, requirement.version)
    return found


def module_replaces(requirement: Requirement) -> dict[str, str]:
    """Module -> ``path version`` for every replace of the component by a published module (a fork, a pin)."""
    found: dict[str, str] = {}
    for entry in _entries(requirement.gomod, "Replace"):
        old, new = entry.get("Old") or {}, entry.get("New") or {}
        if new.get("Version"):  # type: ignore[union-attr]
            module = " ".join(str(old[key]) for key in ("Path", "Version") if old.get(key))  # type: ignore[union-attr]
            found[module] = f"{new['Path']} {new['Version']}"  # type: ignore[index]
    return found


def wrapper_gomod(requirements: Iterable[Requirement], go_version: str, pinned: Mapping[str, str] | None = None) -> str:
    """go.mod of the wrapper module: require every component, replace each sibling with its published version,
    keep each component's replaces by published modules and replace each ``pinned`` module with the version
    given; a module replaced by two different targets is an error."""
    requirements = list(requirements)
    replaces = {module: f"{module} {version}" for module, version in (pinned or {}).items()}
    for requirement in requirements:
        wanted = {module: f"{module} {version}" for module, version in sibling_replaces(requirement).items()}
        for module, target in (wanted | module_replaces(requirement)).items():
            if replaces.setdefault(module, target) != target:
                raise ValueError(f"{module} is wanted as {replaces[module]} and as {target}")
    lines = [f"module {WRAPPER_MODULE}", "", f"go {go_version}", ""]
    lines += [f"require {r.path} {r.version}" for r in sorted(requirements, key=lambda r: r.path)]
    if replaces:
        lines.append("")
        lines += [f"replace {module} => {target}" for module, target in sorted(replaces.items())]
    return "\n".join(lines) + "\n"


def kubernetes_ldflags(version: str, commit: str, build_date: str) -> list[str]:
    """The -X stamps of hack/lib/version.sh for both version packages, tree state ``archive`` (a module archive
    has no git tree, as for source archives); ``commit`` is the tag's commit when the module proxy reports it."""
    bare = version.lstrip("v")
    major, minor, _ = bare.split(".")
    values = {
        "gitVersion": f"v{bare}",
        "gitMajor": major,
        "gitMinor": minor,
        "gitCommit": commit,
        "gitTreeState": "archive",
        "buildDate": build_date,
    }
    return [f"-X {package}.{key}={value}" for package in VERSION_PACKAGES for key, value in values.items()]


def go_directive(gomod: Mapping[str, object]) -> str:
    """The Go version a module's go.mod asks for (its ``go`` line)."""
    return str(gomod.get("Go") or "1.0").strip()


def go_at_least(have: str, need: str) -> bool:
    """Whether the Go toolchain ``have`` (``go1.26.8``) satisfies a go.mod's ``go 1.26.3``."""

    def numbers(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in text.removeprefix("go").split(".") if part.isdigit())

    return numbers(have) >= numbers(need)


def _entries(gomod: Mapping[str, object], key: str) -> list[dict]:
    value = gomod.get(key) or []
    return [entry for entry in value if isinstance(entry, dict)]  # type: ignore[union-attr]
