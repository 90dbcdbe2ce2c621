"""Every host program a test or provider runs comes from a Debian package that scripts/install-host-deps.sh
(what `make test` runs first) installs, so a fresh machine passes the README's test command."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import hosttools
import pytest

from provisioner.artifacts import build as artifacts_build
from provisioner.lab import REPO_ROOT
from provisioner.providers import local

SCRIPT = REPO_ROOT / "scripts" / "install-host-deps.sh"
# Where host programs are started: the tests, the providers, and the modules that run tools for `up`.
SCANNED = [
    *sorted((REPO_ROOT / "tests").rglob("*.py")),
    *sorted((REPO_ROOT / "provisioner" / "providers").glob("*.py")),
    *(REPO_ROOT / "provisioner" / name for name in ("cache.py", "lifecycle.py", "verify.py", "ansible.py")),
]
# Functions whose first argument, when a list literal, is an argv: subprocess's, and the tests' and
# providers' thin wrappers around subprocess.run.
RUNNERS = frozenset({"run", "Popen", "check_output", "call", "check_call", "_run"})


def script_packages(text: str) -> set[str]:
    """The package names in the script's `packages=( ... )` array (comments dropped)."""
    match = re.search(r"^packages=\((.*?)^\)", text, re.S | re.M)
    assert match, "install-host-deps.sh lost its packages=( ... ) array"
    words = " ".join(line.split("#", 1)[0] for line in match.group(1).splitlines()).split()
    return set(words)


def literal_argv_programs(path: Path) -> dict[str, int]:
    """program -> line, for each argv list literal with a literal program name that `path` starts.

    Lists passed straight to a runner count everywhere; in provisioner/ also lists assigned to `argv`.
    """
    found: dict[str, int] = {}
    in_provisioner = REPO_ROOT / "provisioner" in path.parents
    for node in ast.walk(ast.parse(path.read_text())):
        lists: list[ast.List] = []
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.List):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in RUNNERS:
                lists.append(node.args[0])
        if in_provisioner and isinstance(node, ast.Assign) and isinstance(node.value, ast.List):
            lists += [node.value] if any(getattr(target, "id", "") == "argv" for target in node.targets) else []
        for argv in lists:
            first = argv.elts[0] if argv.elts else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.setdefault(first.value, argv.lineno)
    return found


def required_tools(path: Path) -> list[str]:
    """The literal names passed to require_tool/require_tools in a file."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("require_tool", "require_tools"):
            names += [arg.value for arg in node.args if isinstance(arg, ast.Constant)]
    return names


def test_script_array_is_parsed() -> None:
    text = "set -e\npackages=(\n  a b # c d\n  # e\n  f\n)\nmissing=()\n"
    assert script_packages(text) == {"a", "b", "f"}


def test_every_declared_tool_comes_from_a_package_the_script_installs() -> None:
    packages = script_packages(SCRIPT.read_text())
    missing = {tool: pkg for tool, pkg in hosttools.TOOLS.items() if pkg not in packages}
    assert not missing, f"add these packages to {SCRIPT.name}: {missing}"


@pytest.mark.parametrize("tools", [local.TOOLS, artifacts_build.HOST_TOOLS], ids=["local provider", "artifacts build"])
def test_the_tool_lists_of_kubelab_itself_are_declared_with_the_same_packages(tools: dict[str, str]) -> None:
    assert {tool: hosttools.TOOLS.get(tool) for tool in tools} == tools


def test_every_program_started_with_a_literal_argv_is_declared() -> None:
    undeclared = [
        f"{path.relative_to(REPO_ROOT)}:{line} runs `{program}`"
        for path in SCANNED
        for program, line in literal_argv_programs(path).items()
        if program not in hosttools.TOOLS
    ]
    assert not undeclared, "declare these in tests/hosttools.py TOOLS with their Debian package:\n" + "\n".join(
        undeclared
    )


def test_every_required_tool_is_declared() -> None:
    used = {name for path in (REPO_ROOT / "tests").rglob("*.py") for name in required_tools(path)}
    assert used, "no test calls require_tool: the scan is broken"
    assert used <= set(hosttools.TOOLS), sorted(used - set(hosttools.TOOLS))


def test_the_scan_sees_the_known_host_programs() -> None:
    seen = {program for path in SCANNED for program in literal_argv_programs(path)}
    assert {"ip", "iptables", "debootstrap", "vagrant", "virsh", "dpkg-deb", "mkfs.ext4"} <= seen


def test_a_missing_tool_fails_naming_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(hosttools, "SBIN", ())
    with pytest.raises(pytest.fail.Exception, match=r"`nft` is not installed on this host: `apt-get install nftables`"):
        hosttools.require_tool("nft")
    with pytest.raises(KeyError, match="declare `frobnicate`"):
        hosttools.require_tool("frobnicate")
