"""`kubelab plan`, `kubelab render` and `--help` as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.cli import main
from provisioner.spec import OPTIONS


@pytest.fixture(autouse=True)
def kubelab_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("KUBELAB_HOME", str(home))
    return home


def test_plan_prints_and_writes_nothing(kubelab_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--masters", "3", "--workers", "2", "--cni", "calico"]) == 0
    out = capsys.readouterr().out
    assert "worker-2" in out and "calico v3.33.0" in out and "API endpoint   https://192.168.56.10:6443" in out
    assert not kubelab_home.exists()


def test_plan_for_weave_warns_in_one_line_that_it_is_unmaintained(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--masters", "1", "--workers", "2", "--cni", "weave"]) == 0
    captured = capsys.readouterr()
    assert "cni            weave v2.8.8" in captured.out
    (line,) = [line for line in captured.err.splitlines() if "Weave" in line]
    assert line.startswith("warning: Weave Net is unmaintained upstream")
    assert line.endswith("use --cni calico or --cni flannel")


def test_plan_refuses_cilium_on_the_local_provider(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--provider", "local", "--cni", "cilium"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --cni cilium cannot run on --provider local") and err.count("\n") == 1
    assert "shar" in err and "eBPF" in err and "--cni flannel or --cni calico" in err
    assert main(["plan", "--provider", "libvirt", "--cni", "cilium"]) == 0


def test_plan_write_and_render_fill_the_lab_folder(kubelab_home: Path, tmp_path: Path) -> None:
    assert main(["plan", "--name", "demo", "--write"]) == 0
    assert (kubelab_home / "labs/demo/inventory/hosts.yml").is_file()
    out = tmp_path / "out"
    assert main(["render", "--masters", "3", "--workers", "2", "--cni", "flannel", "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"Vagrantfile", "inventory", "lab.json"}
    assert '"cni": "flannel"' in (out / "lab.json").read_text()


def test_bad_input_exits_2_with_one_message_and_creates_nothing(
    kubelab_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["render", "--masters", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --masters 2 is even") and err.count("\n") == 1
    assert not out.exists() and not kubelab_home.exists()


def test_lab_file_and_flag_override(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_text("name: fromfile\nmasters: 5\nworkers: 3\n")
    assert main(["plan", "-f", str(lab), "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "Lab 'fromfile'" in out and "master-5" in out and "worker-1" not in out


def test_help_lists_every_flag_with_its_default() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "provisioner.cli", "plan", "--help"], capture_output=True, text=True, check=True
    )
    text = " ".join(result.stdout.split())
    for option in OPTIONS:
        if option.type is dict:
            continue
        assert option.flag in text, option.flag
        default = "off" if option.type is bool else option.default
        assert f"(default: {default})" in text
    top = subprocess.run([sys.executable, "-m", "provisioner.cli", "--help"], capture_output=True, text=True)
    assert "plan" in top.stdout and "render" in top.stdout


def test_plan_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys; from provisioner.cli import main; main(['plan']);"
        "heavy = [m for m in ('ansible', 'vagrant', 'paramiko', 'testinfra', 'jinja2', 'yaml') if m in sys.modules];"
        "print('HEAVY', heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in result.stdout
