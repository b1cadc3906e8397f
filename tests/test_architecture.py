"""The house rules, checked: framework knowledge only in backends/, layers that stack, one file per backend.

These read the source (tokens and import statements), so a rule broken anywhere in suite/ fails here
with the file, line and name, not somewhere downstream.
"""
from __future__ import annotations

import ast
import io
import json
import os
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "suite"
FRAMEWORK_NAMES = re.compile(
    r"torch|tensorflow|\btf\b|mxnet|gluon|\bjax|flax|keras|cupy|triton|\bxla\b|numba|\bray\b", re.I)
"""Frameworks dropbench adapts (and the engines around them). ``cuda`` is a device name of the spec, not a
framework; NumPy, pandas, matplotlib and pytest are the harness's own tools."""
LAYERS = {"spec": 0, "runtime": 0, "verify": 1, "probe": 1, "bench": 1, "experiments": 1, "report": 2, "kit": 2,
          "commands": 3, "cli": 4, "__init__": 0}
"""spec <- verify/probe/bench/experiments <- report <- commands <- cli; runtime serves all."""


def _code_tokens(path: Path):
    """Tokens of ``path`` that are code: comments and docstrings are left out (they may name frameworks)."""
    previous = tokenize.NEWLINE
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline):
        if tok.type == tokenize.COMMENT:
            continue
        is_docstring = tok.type == tokenize.STRING and previous in (
            tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT)
        if tok.type not in (tokenize.NL, tokenize.COMMENT):
            previous = tok.type
        if not is_docstring:
            yield tok


def framework_mentions(folder: Path) -> list[str]:
    return [f"{path.relative_to(folder)}:{tok.start[0]}: {tok.string[:80]}"
            for path in sorted(folder.rglob("*.py")) for tok in _code_tokens(path)
            if tok.type in (tokenize.NAME, tokenize.STRING) and FRAMEWORK_NAMES.search(tok.string)]


def test_suite_names_no_framework_outside_comments_and_docs() -> None:
    assert framework_mentions(SUITE) == []


def test_the_scan_would_see_a_framework_import(tmp_path) -> None:
    (tmp_path / "bad.py").write_text('"""Docs may say torch."""\n# so may comments: tensorflow\n'
                                     'import numpy as np\nMODES = {"mxnet": "hybridized"}\n')
    assert [line.split(": ", 1)[1] for line in framework_mentions(tmp_path)] == ['"mxnet"']


def test_no_toml_table_of_framework_knowledge_in_suite() -> None:
    assert sorted(p.name for p in SUITE.rglob("*.toml")) == []


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "suite":
        return None
    return LAYERS.get(parts[1] if len(parts) > 1 else "__init__")


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names
                    if node.module == "suite"]
    return out


def test_lower_layers_never_import_higher_ones() -> None:
    broken = []
    for path in sorted(SUITE.rglob("*.py")):
        own = _layer(".".join(path.relative_to(ROOT).with_suffix("").parts))
        for line, module in _imports(path):
            other = _layer(module)
            if own is not None and other is not None and other > own:
                broken.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert broken == []


def test_no_import_circle_between_suite_packages() -> None:
    graph: dict[str, set[str]] = {}
    for path in SUITE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        package = parts[1] if len(parts) > 2 else parts[-1]
        for _, module in _imports(path):
            target = module.split(".")
            if target[0] == "suite" and len(target) > 1 and target[1] != package:
                graph.setdefault(package, set()).add(target[1])

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph.get(start, ()))

    assert [p for p in graph if reaches(p, p, {p})] == []


def test_no_stdlib_import_inside_a_function_without_a_reason() -> None:
    """Function-level imports are for frameworks and heavy optional tools; a stdlib one needs a noqa reason."""
    stdlib = set(sys.stdlib_module_names)
    offenders = []
    for path in sorted(list(SUITE.rglob("*.py")) + list((ROOT / "backends").rglob("*.py"))):
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    names = [a.name for a in inner.names] if isinstance(inner, ast.Import) else [inner.module or ""]
                    if any(n.split(".")[0] in stdlib for n in names) and "noqa" not in lines[inner.lineno - 1]:
                        offenders.append(f"{path.relative_to(ROOT)}:{inner.lineno}")
    assert offenders == []


# -- adding a backend = one file ------------------------------------------------------------------------
EXAMPLE = ROOT / "backends" / "example_plugin.py"


def _dropbench(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(cwd), str(ROOT)]), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "suite.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def test_a_toy_backend_in_one_file_runs_verify_probe_and_bench(tmp_path) -> None:
    """The README's example plugin, copied into an empty folder under another name: nothing else changes."""
    source = EXAMPLE.read_text().replace("class ExampleDropout", "class ToyDropout").replace('name = "example"',
                                                                                              'name = "toy"')
    (tmp_path / "toy_dropout.py").write_text(source)
    ref = "toy_dropout:ToyDropout"
    verify = _dropbench(tmp_path, "verify", "--backend", ref, "--json", "verify.json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    records = json.loads((tmp_path / "verify.json").read_text())["records"]
    assert {r["api"] for r in records} == {"toy:dropout"} and any(r["status"] == "pass" for r in records)
    probe = _dropbench(tmp_path, "probe", "--backend", ref, "--json", "probe.json")
    assert probe.returncode == 0, probe.stdout + probe.stderr
    assert {r["api"] for r in json.loads((tmp_path / "probe.json").read_text())["records"]} == {"toy:dropout"}
    bench = _dropbench(tmp_path, "bench", "--backend", ref, "--quick", "--sizes", "2^12", "--json", "bench.json")
    assert bench.returncode == 0, bench.stdout + bench.stderr
    rows = {(b["extra_info"]["api"], b["extra_info"]["direction"])
            for b in json.loads((tmp_path / "bench.json").read_text())["benchmarks"]}
    assert {("toy:dropout", "forward"), ("toy:dropout", "forward_backward")} <= rows


# -- one launcher: a hung worker takes its children with it --------------------------------------------
HANGS = '''
import os, subprocess, time
import numpy as np


class HangsWithAChild:
    name = "hangs"
    apis = ("dropout",)

    def available(self):
        return True

    def versions(self):
        return {}

    def devices(self):
        return ["cpu"]

    def forward(self, x, spec, *, api):
        child = subprocess.Popen(["sleep", "600"])
        with open(os.environ["HANG_PID_FILE"], "w") as handle:
            handle.write(str(child.pid))
        time.sleep(600)

    forward_backward = forward
'''


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"  # a zombie has exited; only its parent's bookkeeping is left


@pytest.mark.skipif(not Path("/proc").exists(), reason="reads process states from /proc")
def test_a_hung_workers_children_die_with_it(tmp_path, monkeypatch) -> None:
    from suite.runtime.loader import BackendRef
    from suite.verify.runner import run_verify

    (tmp_path / "hangs_plugin.py").write_text(HANGS)
    pid_file = tmp_path / "child.pid"
    monkeypatch.setenv("HANG_PID_FILE", str(pid_file))
    monkeypatch.chdir(tmp_path)  # the worker imports plugins from the current folder
    report = run_verify([BackendRef("hangs", "hangs_plugin:HangsWithAChild")], timeout=8)
    assert report.backends[0]["status"] == "timeout"
    pid = int(pid_file.read_text())
    assert not _alive(pid), f"the worker's child {pid} outlived the timeout"
