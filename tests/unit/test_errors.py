"""One base class for every error a user sees: the CLI prints it as `error: ...` with its exit code."""

from __future__ import annotations

import pytest

from provisioner import cli
from provisioner.artifacts import ArtifactsError
from provisioner.cache import CacheError
from provisioner.debpkgs import DebError
from provisioner.errors import KubelabError, LabError
from provisioner.failover import FailoverError
from provisioner.kubeconfig import KubeconfigError
from provisioner.phases import PhaseSelectionError
from provisioner.providers.base import ProviderError
from provisioner.spec import SpecError
from provisioner.state import LabLockedError
from provisioner.verify import VerifyError

# (error, exit code): 2 when the command line or the lab's settings are wrong, 1 when a command cannot go on.
ERRORS = [
    (SpecError, 2),
    (ArtifactsError, 2),
    (VerifyError, 2),
    (FailoverError, 2),
    (LabError, 1),
    (ProviderError, 1),
    (LabLockedError, 1),
    (KubeconfigError, 1),
    (CacheError, 1),
    (PhaseSelectionError, 1),
    (DebError, 1),
]


@pytest.mark.parametrize(("error", "code"), ERRORS)
def test_the_cli_prints_every_user_error_once_with_its_exit_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], error: type[KubelabError], code: int
) -> None:
    def failing(args: object) -> int:
        raise error("what went wrong, and what to do")

    monkeypatch.setattr(cli, "cmd_status", failing)
    assert cli.main(["status", "--name", "any"]) == code
    out, err = capsys.readouterr()
    assert (out, err) == ("", "error: what went wrong, and what to do\n")


def test_other_exceptions_are_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(args: object) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "cmd_status", failing)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["status", "--name", "any"])
