"""`dropbench probe`: classification, isolation of crashing/hanging APIs, reproducibility, the
committed map (results/probe/) and its agreement with known_divergences.toml, README splicing."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from backends import BUILTIN
from suite.probe import cases as probes
from suite.probe.render import (
    BEGIN,
    END,
    differences,
    known_disagreements,
    load_notes,
    matrix_csv,
    matrix_markdown,
    missing_notes,
    relative_link,
    rewrite_readme,
    section_markdown,
)
from suite.probe.runner import run_probe
from suite.runtime.jsonio import read_result
from suite.runtime.loader import BackendRef, UsageError, api_ids, resolve
from suite.spec import DropoutSpec
from suite.verify.known import Divergence, load_known

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "results" / "probe"
DOCS_SECTION = ROOT / "results" / "probe" / "how-the-frameworks-differ.md"
ONES = np.ones((4, 4), dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# Fake plugin APIs (duck-typed, as a third party would write them; loaded by the worker as
# tests.test_probes:FaultyApis). Each misbehaves in exactly one way.
class FaultyApis:
    name = "faulty"
    apis = ("nan-at-1", "raises", "segfault", "hang", "vanilla")
    capabilities = {"eval", "seed", "backward"}

    def available(self) -> bool:
        return True

    def versions(self) -> dict[str, str]:
        return {"faulty": "0"}

    def devices(self) -> list[str]:
        return ["cpu"]

    def _dropout(self, x: np.ndarray, spec, scale: float | None = None) -> np.ndarray:
        rng = np.random.default_rng(spec.seed)
        keep = 1.0 - float(spec.rate)
        if not spec.training:
            return x.copy()
        if scale is None:
            scale = 0.0 if keep == 0 else 1.0 / keep
        return (x * (rng.random(x.shape) < keep) * scale).astype(x.dtype)

    def forward(self, x, spec, *, api):
        rate = float(spec.rate)
        if api == "nan-at-1" and rate == 1.0:
            return np.full_like(x, np.nan)  # the MXNet-style 0 * inf
        if api == "raises" and rate == 0.5 and spec.training:
            raise FakeFrameworkError("fake framework refuses rate 0.5")
        if api == "segfault" and rate == 0.0:
            os.kill(os.getpid(), signal.SIGSEGV)
        if api == "hang" and rate == 1.0:
            time.sleep(120)
        if api == "vanilla":
            return self._dropout(x, spec, scale=1.0)
        return self._dropout(x, spec)

    def forward_backward(self, x, grad_out, spec, *, api):
        y = self.forward(x, spec, api=api)
        return y, grad_out * (y != 0) * (y / np.where(x == 0, 1, x))


class FakeFrameworkError(RuntimeError):
    pass


FAULTY = "tests.test_probes:FaultyApis"


@pytest.fixture(scope="module")
def faulty_report():
    """One probe run of the faulty plugin over a few cases (a segfault and a hang included)."""
    return run_probe([BackendRef("faulty", FAULTY)], cases=["rate=0", "rate=0.5", "rate=1", "eval", "seed-process"],
                     case_timeout=3.0, timeout=120)


def _record(report, api: str, case: str) -> dict:
    matches = [r for r in report.records if r["api"] == api and r["case"] == case]
    assert len(matches) == 1, (api, case, [(r["api"], r["case"]) for r in report.records])
    return matches[0]


def test_fake_api_returning_nan_at_rate_1_is_reported_nan(faulty_report) -> None:
    record = _record(faulty_report, "faulty:nan-at-1", "rate=1")
    assert record["outcome"] == "nan"
    assert probes.departs(record) is True
    assert _record(faulty_report, "faulty:nan-at-1", "rate=0.5")["outcome"] == "inverted"


def test_fake_api_that_raises_is_reported_error_with_its_class(faulty_report) -> None:
    record = _record(faulty_report, "faulty:raises", "rate=0.5")
    assert record["outcome"] == "error"
    assert record["error_type"] == "FakeFrameworkError"
    assert "refuses rate 0.5" in record["message"]
    assert _record(faulty_report, "faulty:raises", "rate=1")["outcome"] == "zeros"


def test_segfault_in_one_case_is_a_crash_and_the_other_cases_are_still_recorded(faulty_report) -> None:
    crashed = _record(faulty_report, "faulty:segfault", "rate=0")
    assert crashed["outcome"] == "crash"
    assert "SIGSEGV" in crashed["message"]
    for case, outcome in (("rate=0.5", "inverted"), ("rate=1", "zeros"), ("eval", "identity")):
        assert _record(faulty_report, "faulty:segfault", case)["outcome"] == outcome
    # the APIs after the crashing one ran too, in the fresh worker
    assert _record(faulty_report, "faulty:vanilla", "rate=0.5")["outcome"] == "vanilla"
    backend = faulty_report.backends[0]
    assert backend["status"] == "ok" and backend["workers"] >= 3  # main + resume(s) + 2 cross-process


def test_hang_in_one_case_is_a_timeout_and_the_other_cases_are_still_recorded(faulty_report) -> None:
    hung = _record(faulty_report, "faulty:hang", "rate=1")
    assert hung["outcome"] == "timeout"
    assert "watchdog" in hung["message"] and "test_probes.py" in hung["message"]  # where it hung
    assert _record(faulty_report, "faulty:hang", "rate=0.5")["outcome"] == "inverted"
    assert _record(faulty_report, "faulty:hang", "eval")["outcome"] == "identity"


def test_every_planned_pair_has_exactly_one_record(faulty_report) -> None:
    pairs = [(r["api"], r["case"]) for r in faulty_report.records]
    assert len(pairs) == len(set(pairs)) == len(FaultyApis.apis) * 5


def test_a_crash_in_the_cross_process_workers_is_recorded(faulty_report) -> None:
    # seed-process at rate 0.5: the raising API errors in both processes, the others agree
    assert _record(faulty_report, "faulty:raises", "seed-process")["outcome"] == "error"
    assert _record(faulty_report, "faulty:nan-at-1", "seed-process")["finding"] == probes.SAME_MASK


# ---------------------------------------------------------------------------------------------
# Classification: one test per vocabulary word, and the order in which they are decided.
def _mask(shape=(4, 4)) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m.flat[::2] = True
    return m


@pytest.mark.parametrize(
    "x, y, keep, outcome",
    [
        (np.ones((0, 4), np.float32), np.ones((0, 4), np.float32), 0.5, "empty"),
        (ONES, np.where(_mask(), 2.0, np.nan).astype(np.float32), 0.5, "nan"),
        (ONES, ONES.copy(), 0.5, "identity"),
        (ONES, np.zeros_like(ONES), 0.5, "zeros"),
        (ONES, np.where(_mask(), 2.0, 0.0).astype(np.float32), 0.5, "inverted"),
        (ONES, np.where(_mask(), 1.0, 0.0).astype(np.float32), 0.5, "vanilla"),
        (ONES, np.where(_mask(), 3.0, 0.0).astype(np.float32), 0.5, "other"),
        (ONES, np.full_like(ONES, 2.0), 0.5, "other"),  # all kept at 1/keep: no zeros, not inverted
        (ONES, np.ones((2, 8), np.float32), 0.5, "other"),  # shape changed
    ],
)
def test_classify_each_word(x, y, keep, outcome) -> None:
    assert probes.classify(x, y, keep)[0] == outcome


def test_classify_order_and_nan_bookkeeping() -> None:
    x = ONES.copy()
    x[0] = np.nan
    y = np.where(_mask(), 2.0, 0.0).astype(np.float32)
    y[0] = np.nan  # NaN where x had NaN is not "nan": NaN/keep is NaN
    assert probes.classify(x, y, 0.5)[0] == "inverted"
    assert probes.classify(x, x.copy(), 0.5)[0] == "identity"  # NaN == NaN for identity
    y[1, 0] = np.nan  # a new NaN wins over everything after it
    assert probes.classify(x, y, 0.5)[0] == "nan"
    assert probes.classify(ONES, np.zeros_like(ONES), 0.0)[0] == "zeros"  # rate-0 keep, yet zeros
    assert probes.classify(ONES, ONES.copy(), 0.0)[0] == "identity"  # identity before inverted
    # float16: the scale within two float16 roundings
    y16 = np.where(_mask(), np.float16(1 / 0.9), 0).astype(np.float16)
    assert probes.classify(ONES.astype(np.float16), y16, 0.9)[0] == "inverted"


def test_classify_summary_is_json_safe() -> None:
    x = ONES.copy()
    x[0] = np.inf
    with np.errstate(invalid="ignore"):  # inf * 0
        y = x * np.where(_mask(), 2.0, 0.0).astype(np.float32)
    _, detail = probes.classify(x, y, 0.5)
    json.dumps(detail, allow_nan=False)
    assert detail["nan"] > 0 and "inf" in detail["values"]


@pytest.mark.parametrize("outcome", ["error", "crash", "timeout", "n/a"])
def test_no_output_words_label_cells(outcome) -> None:
    record = probes.new_record("x:y", probes.BY_ID["rate=1"])
    record.update(outcome=outcome, error_type="ValueError" if outcome == "error" else None)
    assert probes.cell_label(record) == ("error: ValueError" if outcome == "error" else outcome)
    assert probes.departs(record) is (outcome != "n/a")


def test_vocabulary_is_the_issues_in_its_order() -> None:
    # gaussian and alpha: the labels of the dropout family's APIs (issue 28), decided after zeros like inverted
    assert probes.OUTCOMES == ("error", "crash", "timeout", "n/a", "empty", "nan", "identity", "zeros", "inverted",
                               "vanilla", "gaussian", "alpha", "other")


# -- findings ------------------------------------------------------------------------------------
def test_keep_share_finding_tells_rate_from_keep_prob() -> None:
    rng = np.random.default_rng(1)
    assert probes.keep_share_finding((rng.random(4096) < 0.9).astype(np.float32), 0.1) == probes.DROPS_RATE
    assert probes.keep_share_finding((rng.random(4096) < 0.1).astype(np.float32), 0.1) == probes.DROPS_KEEP
    half = probes.keep_share_finding((rng.random(4096) < 0.5).astype(np.float32), 0.1)
    assert half.startswith("drops ") and half.endswith("%") and half not in (probes.DROPS_RATE, probes.DROPS_KEEP)


def test_broadcast_finding() -> None:
    rng = np.random.default_rng(2)
    shared = np.broadcast_to(rng.random((8, 16, 1, 1)) < 0.5, (8, 16, 4, 4)).astype(np.float32)
    assert probes.broadcast_finding(shared, (2, 3)) == probes.SHARED_AS_ASKED
    assert probes.broadcast_finding(shared, (3,)) == "shared along 2,3"
    assert probes.broadcast_finding((rng.random((8, 16, 4, 4)) < 0.5).astype(np.float32), (2, 3)) == "not shared"


def test_grad_mask_finding() -> None:
    y = np.where(_mask(), 2.0, 0.0).astype(np.float32)
    assert probes.grad_mask_finding(y, y.copy()) == probes.FORWARD_MASK
    assert probes.grad_mask_finding(y, y / 2) == probes.FORWARD_MASK_OTHER_SCALE
    assert probes.grad_mask_finding(y, np.roll(y, 1, axis=1)) == probes.OTHER_MASK


def test_kept_value_finding_counts_ulps() -> None:
    assert probes.kept_value_finding(np.array([0, 10.0], np.float32), 0.1) == "10.0 (+0 ulp)"
    below = np.nextafter(np.nextafter(np.float32(10), np.float32(0)), np.float32(0))
    assert probes.kept_value_finding(np.array([0, below], np.float32), 0.1) == "9.999998 (-2 ulp)"
    assert probes.kept_value_finding(np.array([0, 1 / 0.9], np.float16), 0.9) == "1.111 (+0 ulp)"
    assert probes.kept_value_finding(np.array([1.0, 2.0], np.float32), 0.5) == "2 distinct kept values"


def test_same_mask_and_nan_input_findings() -> None:
    y = np.where(_mask(), 2.0, 0.0)
    assert probes.same_mask_finding(y, y * 3) == probes.SAME_MASK
    assert probes.same_mask_finding(y, np.roll(y, 1, axis=1)) == probes.NEW_MASK
    x = ONES.copy()
    x[0] = np.nan
    zeroed = np.where(_mask(), 2.0, 0.0) * np.where(np.isnan(x), 1, x)
    zeroed[0][_mask()[0]] = np.nan
    assert probes.nan_input_finding(x, zeroed) == probes.DROPPED_NAN_ZERO
    kept = zeroed.copy()
    kept[0] = np.nan
    assert probes.nan_input_finding(x, kept) == probes.NAN_SURVIVES


def test_seed_neighbour_finding_tells_an_offset_seed_from_independent_ones() -> None:
    rng = np.random.default_rng(10369)
    first, second = (np.where(rng.random((64, 64)) < 0.5, 2.0, 0.0) for _ in range(2))
    assert probes.seed_neighbour_finding(first, second) == (probes.SEEDS_INDEPENDENT, {})
    moved = np.roll(first.ravel(), -512).reshape(first.shape)  # MXNet: seed s+1 = seed s moved by one thread's share
    label, detail = probes.seed_neighbour_finding(first, moved)
    assert label == probes.SEEDS_SHIFTED and detail["shift"] == -512 and detail["agree"] == "3584/3584"
    half = np.where(rng.random(first.shape) < 0.5, moved, second)
    assert probes.seed_neighbour_finding(first, half)[0] == probes.SEEDS_CORRELATED


def test_unchecked_spec_passes_bad_rates_through_and_validation_stays_default() -> None:
    for rate in (-0.1, 1.5, math.nan, 1, np.array(0.5, dtype=np.float32)):
        assert DropoutSpec.unchecked(rate).rate is rate
    with pytest.raises(ValueError, match="1.5"):
        DropoutSpec(rate=1.5)
    with pytest.raises(ValueError):
        DropoutSpec.unchecked(0.5, seed=-1)  # other fields are still validated
    assert DropoutSpec.unchecked(1).keep_prob == 0.0


def test_case_ids_are_unique_and_cover_the_issue() -> None:
    required = {"rate=0", "rate=0.5", "rate=1", "rate=-0.1", "rate=1.5", "rate=nan", "int32", "empty", "float16",
                "bfloat16", "eval", "inf-input", "nan-input"}
    assert len(probes.CASE_IDS) == len(set(probes.CASE_IDS))
    assert required <= set(probes.CASE_IDS)
    for case in probes.CASES:
        assert case.why.strip() and case.kind in probes.KINDS


def test_short_message_keeps_the_meaningful_part() -> None:
    class MXNetError(Exception):
        pass

    exc = MXNetError('Traceback (most recent call last):\n  File "x.cc", line 4\nMXNetError: the real reason')
    assert probes.short_message(exc) == "the real reason"
    assert probes.short_message(ValueError("\x1b[1mbold\x1b[0m  text\n more")) == "bold text more"


# ---------------------------------------------------------------------------------------------
# Live runs on numpy (fast): reproducibility and the agreement checker.
@pytest.fixture(scope="module")
def numpy_runs():
    refs = resolve(["numpy"])
    return run_probe(refs, seed=123), run_probe(refs, seed=123)


def test_seeded_numpy_probe_is_byte_identical_when_repeated(numpy_runs) -> None:
    first, second = numpy_runs
    assert json.dumps(first.records, sort_keys=True) == json.dumps(second.records, sort_keys=True)
    assert len(first.records) == len(first.backends[0]["apis"]) * len(probes.CASES)


def test_numpy_probe_observes_the_reference_semantics(numpy_runs) -> None:
    report, _ = numpy_runs
    cell = {(r["api"], r["case"]): probes.cell_label(r) for r in report.records}
    assert cell[("numpy:reference", "rate=0")] == "identity"
    assert cell[("numpy:reference", "rate=1")] == "zeros"
    assert cell[("numpy:reference", "rate=0.5")] == "inverted"
    assert cell[("numpy:reference", "seed-process")] == probes.SAME_MASK
    assert cell[("numpy:reference", "unseeded-process")] == probes.NEW_MASK
    assert cell[("numpy:reference", "broadcast-channel")] == probes.SHARED_AS_ASKED
    assert cell[("numpy:d2l-scratch", "eval")] == "n/a"
    assert cell[("numpy:d2l-scratch", "rate=nan")] == "error: AssertionError"
    json.dumps(report.to_json(), allow_nan=False)


def test_agreement_checker_on_live_numpy_and_fake_apis(numpy_runs, faulty_report) -> None:
    numpy_payload = {"records": numpy_runs[0].records}
    assert known_disagreements(numpy_payload, []) == []
    payload = {"records": faulty_report.records}
    # the NaN at rate 1 departs from the spec: without a known divergence it is reported ...
    problems = known_disagreements(payload, [])
    assert any("faulty:nan-at-1 rate=1" in p for p in problems)
    # ... with one it is explained, and an entry for an API that agrees with the spec is flagged
    entries = [Divergence("faulty:nan-at-1", "*/rate=1/*", "NaN at p=1", ""),
               Divergence("faulty:raises", "zeros/rate=1/*", "wrongly listed", "")]
    problems = known_disagreements(payload, entries)
    assert not any("faulty:nan-at-1 rate=1" in p for p in problems)
    assert any("faulty:raises rate=1" in p and "zeros/rate=1/*" in p for p in problems)


# ---------------------------------------------------------------------------------------------
# The committed map (results/probe/) is the output of a real run and agrees with verify's data.
@pytest.fixture(scope="module")
def committed() -> dict:
    return read_result(COMMITTED / "probe.json", kind="probe")


GPU_ONLY = {"cupy", "triton", "numba-cuda"}  # committed from a machine without a GPU: not run there, with the reason


def test_committed_run_covers_every_api_and_case(committed) -> None:
    not_run = {b["backend"]: b for b in committed["backends"] if b["status"] != "ok"}
    assert set(not_run) <= GPU_ONLY, not_run
    assert all(b["reason"] and ("CUDA" in b["reason"] or "not installed" in b["reason"]) for b in not_run.values())
    apis = [a for b in committed["backends"] for a in b["apis"]]
    pairs = {(r["api"], r["case"]) for r in committed["records"]}
    committed_cases = {c for _, c in pairs}
    assert pairs == {(a, c) for a in apis for c in committed_cases}  # a full matrix: no hole
    # every API the built-in adapters declare today under their own names (keras3-jax -> keras3:jax),
    # less those of GPU-only backends, which a machine without a GPU cannot run (numba-cuda came after the map)
    not_run_refs = {b["ref"] for b in committed["backends"] if b["status"] != "ok"} | GPU_ONLY  # registry names
    declared = {api for name, ref in BUILTIN.items() for api in api_ids(ref) if name not in not_run_refs}
    assert set(apis) - declared == set(), "the committed map lists APIs no adapter declares any more"
    assert committed_cases - set(probes.CASE_IDS) == set(), "the committed map has cases the probe no longer runs"
    for r in committed["records"]:
        assert set(r) >= {"api", "case", "outcome", "error_type", "message", "detail"}
        assert r["outcome"] in probes.OUTCOMES
    new_apis, new_cases = declared - set(apis), set(probes.CASE_IDS) - committed_cases
    if new_apis or new_cases:
        pytest.skip(f"the committed probe map predates {sorted(new_apis) or ''} {sorted(new_cases) or ''}: re-run "
                    "`dropbench probe --json results/probe/probe.json --markdown results/probe/matrix.md "
                    "--csv results/probe/matrix.csv --readme README.md` on a machine with every framework")


def test_committed_map_agrees_with_known_divergences(committed) -> None:
    assert known_disagreements(committed, load_known()) == []
    # and the specific MXNet entries of verify show up as their non-spec outcome here
    cell = {(r["api"], r["case"]): probes.cell_label(r) for r in committed["records"]}
    assert cell[("mxnet:nd.Dropout", "rate=1")] == "nan"
    assert cell[("mxnet:gluon.nn.Dropout", "grad:rate=1")] == "nan"


def test_committed_tables_and_section_are_generated_from_the_json(committed) -> None:
    assert (COMMITTED / "matrix.md").read_text(encoding="utf-8") == matrix_markdown(committed)
    assert (COMMITTED / "matrix.csv").read_text(encoding="utf-8") == matrix_csv(committed)
    expected = section_markdown(committed, load_notes(),
                                matrix_link=relative_link(COMMITTED / "matrix.md", DOCS_SECTION),
                                json_link=relative_link(COMMITTED / "probe.json", DOCS_SECTION))
    assert DOCS_SECTION.read_text(encoding="utf-8") == expected


def test_every_committed_difference_has_a_note(committed) -> None:
    assert differences(committed), "the committed run shows no difference at all"
    assert missing_notes(committed, load_notes()) == []


# ---------------------------------------------------------------------------------------------
# README splicing and the CLI.
def _dropbench(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "suite.cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd or ROOT)


def test_readme_rewrite_replaces_exactly_the_marked_text(tmp_path, committed) -> None:
    head = "# Title\n\nIntro with a fake marker name: probe:begin (not a comment).\n\n"
    tail = "\n\n## After\n\nUntouched text.\n"
    readme = tmp_path / "README.md"
    readme.write_text(f"{head}{BEGIN}\nold hand-typed text\n{END}{tail}", encoding="utf-8")
    proc = _dropbench("probe", "--from", str(COMMITTED / "probe.json"), "--readme", str(readme))
    assert proc.returncode == 0, proc.stderr
    text = readme.read_text(encoding="utf-8")
    assert text.startswith(head + BEGIN + "\n## How the frameworks differ\n")
    assert text.endswith("\n" + END + tail)
    assert "old hand-typed text" not in text
    inner = text[len(head) + len(BEGIN) + 1: -len(END + tail) - 1]
    assert inner + "\n" == section_markdown(committed, load_notes(),
                                            matrix_link=relative_link(COMMITTED / "matrix.md", readme),
                                            json_link=relative_link(COMMITTED / "probe.json", readme))
    # idempotent, and no temporary file left behind
    assert _dropbench("probe", "--from", str(COMMITTED / "probe.json"), "--readme", str(readme)).returncode == 0
    assert readme.read_text(encoding="utf-8") == text
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]


@pytest.mark.parametrize("content", ["no markers\n", f"{END}\n{BEGIN}\n", f"{BEGIN}\n{BEGIN}\n{END}\n"])
def test_readme_without_proper_markers_is_refused_and_untouched(tmp_path, content) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(content, encoding="utf-8")
    with pytest.raises(UsageError):
        rewrite_readme(readme, "section\n")
    proc = _dropbench("probe", "--backend", "numpy", "--readme", str(readme))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(readme) in lines[0]
    assert readme.read_text(encoding="utf-8") == content


@pytest.mark.parametrize("args, named", [(["--case", "rate=2"], "rate=2"), (["--seed", "-1"], "-1"),
                                         (["--from", "x.json", "--backend", "numpy"], "--from")])
def test_probe_misuse_exits_2_naming_the_value(args, named) -> None:
    proc = _dropbench("probe", *args)
    assert proc.returncode == 2, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and "Traceback" not in proc.stderr


def test_probe_cli_writes_json_markdown_csv(tmp_path) -> None:
    out = tmp_path / "p"
    proc = _dropbench("probe", "--backend", "numpy", "--case", "rate=1", "--case", "eval",
                      "--json", str(out / "probe.json"), "--markdown", str(out / "matrix.md"), "--csv", str(out / "m.csv"))
    assert proc.returncode == 0, proc.stderr
    payload = read_result(out / "probe.json", kind="probe")
    assert {r["case"] for r in payload["records"]} == {"rate=1", "eval"}
    assert payload["versions"]["numpy"] == np.__version__
    assert (out / "m.csv").read_text().splitlines()[0].startswith("case,numpy:reference,")
    assert "| eval | identity |" in (out / "matrix.md").read_text()


# ---------------------------------------------------------------------------------------------
# Issue 18: compiled vs eager, rate resolution, threads, attention dropout, --diff.
class CompiledFake:
    """A plugin with the compiled hooks: "same" compiles to eager's mask, "other" to another one
    (the torch.compile behaviour of PyTorch issue 93578), "lost-grad" drops the forward mask in its
    compiled backward; "threaded" draws another mask once pinned to a thread count."""

    name = "cfake"
    apis = ("same", "other", "lost-grad", "threaded")
    capabilities = {"seed", "backward", "eval"}

    def __init__(self) -> None:
        self.pinned: int | None = None

    def available(self) -> bool:
        return True

    def versions(self) -> dict[str, str]:
        return {"cfake": "0"}

    def devices(self) -> list[str]:
        return ["cpu"]

    def pin_threads(self, threads: int) -> dict:
        self.pinned = threads
        return {"cfake.threads": threads}

    def compiled_mode_for_probe(self, api: str) -> str:
        return "fake-jit"

    def _y(self, x, spec, shift: int = 0):
        keep = 1.0 - float(spec.rate)
        extra = self.pinned or 0 if shift == 0 else shift
        mask = np.random.default_rng(None if spec.seed is None else spec.seed + extra).random(x.shape) < keep
        return (x * mask / keep).astype(x.dtype)

    def forward(self, x, spec, *, api):
        return self._y(x, spec, 0) if api == "threaded" else self._y(x, spec, -1)

    def forward_backward(self, x, grad_out, spec, *, api):
        y = self.forward(x, spec, api=api)
        return y, grad_out * y / np.where(x == 0, 1, x)

    def forward_compiled(self, x, spec, *, api):
        return self._y(x, spec, 7 if api == "other" else -1)

    def forward_backward_compiled(self, x, grad_out, spec, *, api):
        y = self.forward_compiled(x, spec, api=api)
        grad = self._y(x, spec, 9) if api == "lost-grad" else y
        return y, grad_out * grad / np.where(x == 0, 1, x)


@pytest.fixture(scope="module")
def compiled_report():
    return run_probe([BackendRef("cfake", "tests.test_probes:CompiledFake")],
                     cases=["compiled", "compiled-grad", "threads"], timeout=120)


def test_compiled_cases_tell_eager_mask_from_another_and_check_the_compiled_gradient(compiled_report) -> None:
    cell = {(r["api"], r["case"]): probes.cell_label(r) for r in compiled_report.records}
    assert cell[("cfake:same", "compiled")] == probes.EAGER_MASK
    assert cell[("cfake:other", "compiled")] == probes.NOT_EAGER_MASK
    assert cell[("cfake:same", "compiled-grad")] == probes.FORWARD_MASK
    assert cell[("cfake:lost-grad", "compiled-grad")] == probes.OTHER_MASK
    assert _record(compiled_report, "cfake:other", "compiled")["detail"]["mode"] == "fake-jit"


def test_thread_case_compares_the_default_worker_with_a_pinned_one(compiled_report) -> None:
    cell = {(r["api"], r["case"]): probes.cell_label(r) for r in compiled_report.records}
    assert cell[("cfake:threaded", "threads")] == probes.NEW_AT_THREADS  # mask depends on the pinned count
    assert cell[("cfake:same", "threads")] == probes.SAME_AT_THREADS
    detail = _record(compiled_report, "cfake:same", "threads")["detail"]
    assert detail["pinned"]["cfake.threads"] == 1 and "mask_digest" not in detail


def test_plugin_without_compiled_hooks_is_n_a_with_the_reason() -> None:
    from suite.probe.runner import run_case  # noqa: PLC0415 - the child-side entry point, used in-process here

    record = run_case(FaultyApis(), "vanilla", probes.BY_ID["compiled"], 1)
    assert record["outcome"] == "n/a" and "no compiled mode" in record["message"]


def test_eager_mask_finding() -> None:
    a = np.array([[0.0, 2.0], [2.0, 0.0]])
    assert probes.eager_mask_finding(a, a * 3) == probes.EAGER_MASK  # the mask, not the values
    assert probes.eager_mask_finding(a, a[::-1]) == probes.NOT_EAGER_MASK
    assert probes.eager_mask_finding(a, a.ravel()).startswith("compiled shape")


@pytest.mark.parametrize("n, p", [(1, 0.5), (200, 0.3), (5000, 0.002), (20_000, 0.998), (300_000, 7.5 / 256)])
def test_windowed_binomial_region_is_the_exact_one(n, p) -> None:
    from suite.verify.stats import binomial_interval  # noqa: PLC0415 - the reference it must equal

    assert probes.binomial_region(n, p) == binomial_interval(n, p)


RESOLUTION = [c for c in probes.CASES if c.kind == "rate-resolution"]


@pytest.mark.parametrize("rcase", RESOLUTION, ids=[c.id for c in RESOLUTION])
def test_resolution_cases_separate_the_rate_from_its_1_16_and_1_256_neighbours(rcase) -> None:
    """Disjoint regions at level 1e-9: an exact API is misread as quantized (or the reverse) with
    probability <= 1e-9 per neighbour; fails if the element count or the rates stop separating them."""
    n = int(np.prod(rcase.shape))
    lo, hi = probes.binomial_region(n, 1.0 - rcase.rate)
    neighbours = probes.grid_neighbours(rcase.rate)
    assert {name for name, _ in neighbours} == {"1/16", "1/256"}
    for _, value in neighbours:
        a, b = probes.binomial_region(n, 1.0 - value)
        assert b < lo or a > hi, (rcase.id, value)


def _mask_with(n: int, dropped: int) -> np.ndarray:
    y = np.full(n, 2.0, dtype=np.float32)
    y[np.random.default_rng(0).choice(n, dropped, replace=False)] = 0.0
    return y.reshape(-1, 1024)


def test_resolution_finding_names_the_grid_a_quantized_rate_fell_on() -> None:
    n = 1 << 21
    label, detail = probes.resolution_finding(_mask_with(n, round(n * 7.5 / 256)), 7.5 / 256)
    assert label == probes.AS_GIVEN
    assert detail["interval"][0] < 7.5 / 256 < detail["interval"][1] and detail["n"] == n
    assert probes.resolution_finding(_mask_with(n, n // 32), 7.5 / 256)[0] == "rounded to 0.03125 (a 1/256 step)"
    assert probes.resolution_finding(_mask_with(n, 0), 0.002)[0] == "rounded to 0 (a 1/16 step)"
    assert probes.resolution_finding(_mask_with(n, n // 16), 0.03)[0] == "rounded to 0.0625 (a 1/16 step)"
    assert probes.resolution_finding(_mask_with(n, n // 10), 0.03)[0].startswith("drops 10.0000%")


def test_rate_interval_is_the_inverted_exact_test() -> None:
    n, k = 1 << 21, 61440
    lo, hi = probes.rate_interval(n, k)
    assert lo < k / n < hi
    for p, inside in ((lo * 1.001, True), (hi * 0.999, True), (lo * 0.99, False), (hi * 1.01, False)):
        a, b = probes.binomial_region(n, p)
        assert (a <= k <= b) == inside, p


def test_numpy_fast_resolution_is_2_to_the_minus_32() -> None:
    from backends.numpy_fast import keep_threshold  # noqa: PLC0415 - the adapter's own threshold

    for case in RESOLUTION:
        keep = 1.0 - case.rate
        assert abs(keep_threshold(keep) / 2**32 - keep) <= 2.0**-33


# Attention dropout: the adapters return x times the dropped weights.
def test_weights_layout_keeps_element_order_and_caps_the_keys() -> None:
    from backends.attention_inputs import weights_layout  # noqa: PLC0415 - backend helper under test

    assert weights_layout((64, 64)) == (64, 64)
    assert weights_layout((2048, 1024)) == (32768, 64)
    assert weights_layout((8, 16, 4, 4)) == (512, 4)
    assert weights_layout((0, 4)) == (0, 4)
    with pytest.raises(ValueError):
        weights_layout(())


@pytest.mark.parametrize("api", ["F.scaled_dot_product_attention", "nn.MultiheadAttention"])
def test_torch_attention_dropout_exposes_the_weights(api) -> None:
    pytest.importorskip("torch")
    from backends.torch_backend import TorchBackend  # noqa: PLC0415 - needs torch

    backend = TorchBackend()
    x = np.random.default_rng(1).standard_normal((256, 64)).astype(np.float32)
    y = backend.forward(x, DropoutSpec(0.25, seed=3), api=api)
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / 0.75, rtol=4e-7)  # scaled by 1/keep, elementwise
    lo, hi = probes.binomial_region(x.size, 0.75)
    assert lo <= int(kept.sum()) <= hi  # kept fraction at level 1e-9
    assert np.array_equal(backend.forward(x, DropoutSpec(0.25, seed=3), api=api), y)
    assert not np.array_equal(backend.forward(x, DropoutSpec(0.25, seed=4), api=api) != 0, kept)
    if api == "nn.MultiheadAttention":
        np.testing.assert_array_equal(backend.forward(x, DropoutSpec(0.25, training=False), api=api), x)
    with pytest.raises(Exception, match="no backward"):
        backend.forward_backward(x, x, DropoutSpec(0.25, seed=3), api=api)


# --diff between two probe runs.
def _payload(versions: dict, records: list[tuple[str, str, str]], machine_id: str = "m1") -> dict:
    return {"schema": 1, "kind": "probe", "versions": versions, "machine": {"id": machine_id, "cores": 2},
            "backends": [{"backend": "torch", "ref": "torch", "status": "ok"}],
            "records": [{"api": a, "case": c, "outcome": o, "error_type": None, "message": None, "finding": None,
                         "expected": None, "detail": None} for a, c, o in records]}


def test_diff_lists_changed_versions_machine_and_cells_only() -> None:
    from suite.probe.diff import MISSING, diff, diff_markdown  # noqa: PLC0415 - module under test

    old = _payload({"torch": "2.12.0", "numpy": "1.26.4"},
                   [("torch:nn.Dropout2d", "rate=0.5", "inverted"), ("torch:F.dropout", "rate=1", "zeros"),
                    ("torch:gone", "rate=1", "zeros")])
    new = _payload({"torch": "2.13.0", "numpy": "1.26.4"},
                   [("torch:nn.Dropout2d", "rate=0.5", "other"), ("torch:F.dropout", "rate=1", "zeros")], "m2")
    d = diff(old, new)
    assert d.context == [("version: torch", "2.12.0", "2.13.0"), ("machine: id", "m1", "m2")]
    assert d.cells == [("torch:nn.Dropout2d", "rate=0.5", "inverted", "other"), ("torch:gone", "rate=1", "zeros", MISSING)]
    assert d.compared == 2
    md = diff_markdown(d, "old.json", "new.json")
    assert "| version: torch | 2.12.0 | 2.13.0 |" in md and "| torch:nn.Dropout2d | rate=0.5 | inverted | other |" in md
    assert diff(old, old).empty and "No difference" in diff_markdown(diff(old, old), "a", "a")


def test_diff_cli_prints_and_writes_markdown_and_refuses_misuse(tmp_path) -> None:
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(_payload({"torch": "2.12.0"}, [("torch:F.dropout", "rate=1", "zeros")])))
    new.write_text(json.dumps(_payload({"torch": "2.13.0"}, [("torch:F.dropout", "rate=1", "nan")])))
    proc = _dropbench("probe", "--diff", str(old), str(new), "--markdown", str(tmp_path / "d.md"))
    assert proc.returncode == 0, proc.stderr
    assert "2.12.0" in proc.stdout and "1 cell(s) changed" in proc.stdout and "nan" in proc.stdout
    assert "| torch:F.dropout | rate=1 | zeros | nan |" in (tmp_path / "d.md").read_text()
    for args, named in (([str(old), str(new), "--backend", "numpy"], "--diff"), ([str(old), str(tmp_path / "no.json")], "no.json")):
        proc = _dropbench("probe", "--diff", *args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr and named in proc.stderr, proc
