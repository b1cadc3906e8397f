"""The README's Quick start stays true: two commands, and CI runs the second one verbatim."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(?:sh|bash|shell)\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "Quick start must hold exactly one shell block"
    return [line.strip() for line in blocks[0].splitlines() if line.strip() and not line.strip().startswith("#")]


def test_quick_start_has_exactly_two_commands() -> None:
    main_job, tests = _quick_start_commands()
    assert main_job.endswith("dropbench run")
    assert tests.endswith("pytest")
    assert "[all]" in main_job and "[all,test]" in tests


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    _, tests = _quick_start_commands()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert tests in ci.splitlines()
