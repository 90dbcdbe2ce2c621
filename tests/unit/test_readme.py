"""The README's table of flags and lab-file keys is generated from the spec; keep it in sync."""

from __future__ import annotations

import os
import re

from provisioner.lab import REPO_ROOT
from provisioner.spec import OPTIONS

START, END = "<!-- options-table:start", "<!-- options-table:end -->"


def options_table() -> str:
    rows = ["| Flag | Lab-file key | Default | Meaning |", "|---|---|---|---|"]
    for option in OPTIONS:
        flags = [] if option.type is dict else [option.flag]
        if option.key == "kubernetes_version":
            flags.append("--k8s-version")
        if option.key == "inventory":
            flags.insert(0, "-i")
        default = "off" if option.type is bool else "-" if option.default is None else f"`{option.default}`"
        choices = f" ({', '.join(option.choices)})" if option.choices else ""
        flag_text = " / ".join(f"`{flag}`" for flag in flags)
        rows.append(f"| {flag_text} | `{option.key}` | {default} | {option.help}{choices} |")
    return "\n".join(rows)


def test_readme_options_table_matches_the_spec() -> None:
    readme = REPO_ROOT / "README.md"
    text = readme.read_text()
    pattern = re.compile(re.escape(START) + r"[^\n]*\n(.*?)" + re.escape(END), re.S)
    match = pattern.search(text)
    assert match, "README.md lost its options-table markers"
    if os.environ.get("KUBELAB_UPDATE_GOLDEN") == "1":
        text = text[: match.start(1)] + options_table() + "\n" + text[match.end(1) :]
        readme.write_text(text)
        match = pattern.search(text)
    assert match.group(1).strip() == options_table(), "README table is stale: KUBELAB_UPDATE_GOLDEN=1 pytest"
