"""Merge `dropbench bench` runs (any number, any machines) into tables, plots, an HTML page and summary.md.

The time statistic everywhere is the MEDIAN round time of pytest-benchmark (``stats.median``: seconds
per step, robust to the odd slow round). Derived from it:

* GB/s = ``extra_info.bytes`` (useful traffic of one step, as the bench defines it) / time;
* elements/s = numel / time;
* x fastest = time / time of the fastest dropout API of the same machine, device, direction, dtype and size
  (baselines excluded from "fastest");
* x best = time / time of the fastest *conforming* API of the same group (:func:`conformance` says which);
* x copy, x rng32 = time / time of ``baseline:copy`` / ``baseline:rng32`` of the same machine, device,
  dtype and size, timed in the same worker process (``extra_info.worker``) of the same run; when that
  process did not time one, the median over the workers that did (every caption says how many rows).

Machines (top-level ``machine_id``) are never pooled: every table has a machine column or a machine
heading, and plots are written per machine. Loading and validation need no pandas (compare uses them
too); everything else imports pandas when called.
"""
from __future__ import annotations

import base64
import html
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from suite.bench.schema import READABLE, upgrade
from suite.report import bandwidth, overview
from suite.report.units import size_label
from suite.runtime.jsonio import ResultFileError, atomic_write_text, read_result

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

DIRECTIONS = ("forward", "forward_backward")
DIRECTION_TITLE = {"forward": "forward", "forward_backward": "forward+backward"}
BASELINES = ("copy", "rng32")
REQUIRED_INFO: dict[str, type] = {"api": str, "direction": str, "device": str, "dtype": str, "numel": int}
TIME_NOTE = "time = median round time of one step (pytest-benchmark stats.median)"


# ------------------------------------------------------------------------------------ loading


@dataclass(frozen=True)
class Run:
    path: Path
    payload: dict[str, Any]

    @property
    def machine_id(self) -> str:
        return str(self.payload["machine_id"])


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_bench(payload: dict[str, Any]) -> str | None:
    """Why a bench payload cannot be reported, or None. Checks only what report/compare rely on."""
    if not isinstance(payload.get("machine_id"), str) or not payload["machine_id"]:
        return "no top-level 'machine_id'"
    benches = payload.get("benchmarks")
    if not isinstance(benches, list):
        return "no 'benchmarks' list"
    for i, bench in enumerate(benches):
        where = f"benchmark #{i}"
        if not isinstance(bench, dict):
            return f"{where} is not an object"
        info, stats = bench.get("extra_info"), bench.get("stats")
        if not isinstance(info, dict):
            return f"{where} has no 'extra_info' object"
        if not isinstance(stats, dict):
            return f"{where} has no 'stats' object"
        for name, typ in REQUIRED_INFO.items():
            value = info.get(name)
            if not isinstance(value, typ) or isinstance(value, bool):
                return f"{where}: extra_info.{name} is missing or not a {typ.__name__} ({value!r})"
        if info["direction"] not in DIRECTIONS:
            return f"{where}: extra_info.direction {info['direction']!r} is not one of {', '.join(DIRECTIONS)}"
        if info["numel"] <= 0:
            return f"{where}: extra_info.numel {info['numel']!r} is not positive"
        median = stats.get("median")
        data = stats.get("data")
        if not (_is_number(median) and median > 0):
            if not (isinstance(data, list) and data and all(_is_number(v) and v > 0 for v in data)):
                return f"{where}: stats has neither a positive 'median' nor per-round 'data'"
        if "data" in stats and not (isinstance(data, list) and all(_is_number(v) for v in data)):
            return f"{where}: stats.data is not a list of numbers"
        if info.get("bytes") is not None and not (_is_number(info["bytes"]) and info["bytes"] >= 0):
            return f"{where}: extra_info.bytes {info['bytes']!r} is not a non-negative number"
    return None


def load_run(path: Path | str) -> Run:
    """One validated bench file, or ResultFileError naming the file (CLI exit 2)."""
    source = Path(path)
    payload = upgrade(read_result(source, kind="bench", schemas=READABLE))  # schema 1 files still load
    problem = validate_bench(payload)
    if problem:
        raise ResultFileError(f"{source}: {problem}")
    return Run(source, payload)


@dataclass
class Inputs:
    """What `dropbench report` was given, by kind: bench runs, and verify and probe payloads with their paths."""

    runs: list[Run] = field(default_factory=list)
    verify: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    probe: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)


REPORT_KINDS = ("bench", "verify", "probe")


def load_inputs(paths: Sequence[Path | str]) -> Inputs:
    """Any mix of bench, verify and probe files, each validated (ResultFileError names a bad file, CLI exit 2)."""
    inputs = Inputs()
    for path in paths:
        source = Path(path)
        payload = read_result(source, schemas=tuple(sorted({1, *READABLE})))
        kind = payload.get("kind")
        if kind == "bench" or (kind is None and "benchmarks" in payload):
            inputs.runs.append(load_run(source))
        elif kind == "verify" and isinstance(payload.get("records"), list):
            inputs.verify.append((source, payload))
        elif kind == "probe" and isinstance(payload.get("records"), list):
            inputs.probe.append((source, payload))
        else:
            raise ResultFileError(f"{source}: a {kind!r} file, expected 'bench', or 'verify' or 'probe' with a 'records' list")
    return inputs


# ------------------------------------------------------------------------------------ formatting


def format_time(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def format_ratio(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.2f}×"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "", text.replace(":", "").replace("/", "-")) or "x"


def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """GitHub markdown; first column left-aligned, the rest right-aligned (no tabulate dependency)."""
    head = "| " + " | ".join(_md_cell(h) for h in headers) + " |"
    rule = "|" + "|".join([":---"] + ["---:"] * (len(headers) - 1)) + "|"
    body = ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join([head, rule, *body])


@dataclass
class Table:
    """A titled display table rendered the same way to markdown and HTML."""

    title: str
    caption: str
    headers: list[str]
    rows: list[list[str]]

    def markdown(self, level: int = 3) -> str:
        return f"{'#' * level} {self.title}\n\n{self.caption}\n\n{markdown_table(self.headers, self.rows)}\n"

    def html(self, title: bool = True) -> str:
        """``title`` False: the section around it already says it (no "Machines" under "Machines")."""
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in self.rows)
        return ((f"<h3>{html.escape(self.title)}</h3>\n" if title else "")
                + f"<p class='caption'>{html.escape(self.caption)}</p>\n"
                f"<div class='wide'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>\n")


# ------------------------------------------------------------------------------------ the frame


def _rows(runs: Sequence[Run]) -> list[dict[str, Any]]:
    import numpy as np

    rows = []
    for index, run in enumerate(runs):
        facts = run.payload.get("machine_facts") or {}
        for bench in run.payload["benchmarks"]:
            info, stats = bench["extra_info"], bench["stats"]
            median = stats.get("median")
            if not (_is_number(median) and median > 0):
                median = float(np.median(stats["data"]))
            api = info["api"]
            backend = str(info.get("backend") or api.split(":", 1)[0])
            rate, threads = info.get("rate"), info.get("threads")
            rows.append({
                "machine": run.machine_id, "cpu": str(facts.get("cpu", "")), "run": index,
                "source": str(run.path), "datetime": str(run.payload.get("datetime") or ""),
                "backend": backend, "api": api, "mode": str(info.get("mode") or "eager"),
                "direction": info["direction"], "device": info["device"], "dtype": info["dtype"],
                "numel": int(info["numel"]), "rate": "?" if rate is None else f"{rate:g}" if _is_number(rate) else str(rate),
                "threads": "?" if threads is None else str(threads),
                "worker": str(info.get("worker") or backend),
                "bytes": float(info["bytes"]) if _is_number(info.get("bytes")) else float("nan"),
                "median_s": float(median), "rounds": int(stats.get("rounds") or len(stats.get("data") or [])),
                "iqr_s": float(stats["iqr"]) if _is_number(stats.get("iqr")) else float("nan"),
                "is_baseline": backend == "baseline" or api.startswith("baseline:"),
                **bandwidth.row_fields(info, facts),
                "ndim": len(info.get("shape") or ()),  # the input layout (channel ids are 3-/4-d): × best is like for like
            })
    return rows


KEY = ["machine", "api", "mode", "direction", "device", "dtype", "numel", "rate", "threads", "worker"]
GROUP = ["machine", "device", "direction", "dtype", "numel"]


def _labels(df: "pd.DataFrame") -> "pd.Series":
    """'api', 'api [mode]' for non-eager modes, plus ' p=rate' / ' t=threads' where these vary on one machine."""
    label = df["api"].where(df["mode"] == "eager", df["api"] + " [" + df["mode"] + "]")
    for column, prefix in (("rate", " p="), ("threads", " t=")):
        varies = df[~df["is_baseline"] | (column == "threads")].groupby("machine")[column].transform("nunique")
        varies = varies.reindex(df.index).fillna(1) > 1
        label = label.where(~varies, label + prefix + df[column])
    return label


def _attach_baselines(df: "pd.DataFrame") -> "pd.DataFrame":
    """x_copy / x_rng32 from the same worker process of the same run, else the median over workers."""
    import numpy as np

    dims = ["machine", "device", "dtype", "numel", "threads"]
    base = df[df["is_baseline"]]
    for name in BASELINES:
        b = base[base["api"] == f"baseline:{name}"]
        same = (b.groupby(dims + ["run", "worker"], as_index=False)["median_s"].median()
                .rename(columns={"median_s": f"{name}_same_s"}))
        pooled = b.groupby(dims, as_index=False).agg(**{f"{name}_pool_s": ("median_s", "median"),
                                                        f"{name}_workers": ("worker", "nunique")})
        df = df.merge(same, on=dims + ["run", "worker"], how="left").merge(pooled, on=dims, how="left")
        has_same = df[f"{name}_same_s"].notna()
        df[f"{name}_s"] = df[f"{name}_same_s"].where(has_same, df[f"{name}_pool_s"])
        workers = df[f"{name}_workers"].fillna(0).astype(int).astype(str)
        df[f"{name}_from"] = np.where(has_same, "same worker",
                                      np.where(df[f"{name}_pool_s"].notna(), "median of " + workers + " workers", "none"))
        df[f"x_{name}"] = df["median_s"] / df[f"{name}_s"]
        df = df.drop(columns=[f"{name}_same_s", f"{name}_pool_s", f"{name}_workers"])
    return df


def results_frame(runs: Sequence[Run]) -> tuple["pd.DataFrame", list[str]]:
    """Every benchmark of every run, one row each, with throughput and baseline ratios; plus notes.

    A benchmark measured again in a later run of the same machine (same key, same worker) replaces the
    earlier one (later = later ``datetime``, then later on the command line); the notes say how many.
    """
    import pandas as pd

    notes: list[str] = []
    df = pd.DataFrame(_rows(runs))
    if df.empty:
        return df, notes
    df = df.sort_values(["datetime", "run"], kind="stable")
    dup = df.duplicated(KEY, keep="last")
    if dup.any():
        notes.append(f"{int(dup.sum())} benchmark(s) measured again in a later run of the same machine "
                     "were replaced by the later result")
        df = df[~dup]
    df = df.reset_index(drop=True)
    df["label"] = _labels(df)
    df["gbps"] = df["bytes"] / df["median_s"] / 1e9
    df["elems_per_s"] = df["numel"] / df["median_s"]
    df = bandwidth.add_columns(_attach_baselines(df))
    return df.sort_values(GROUP + ["is_baseline", "label", "worker"], kind="stable").reset_index(drop=True), notes


def display_frame(df: "pd.DataFrame") -> "pd.DataFrame":
    """One row per machine x device x direction x dtype x size x label: baselines timed in several
    workers are collapsed to their median (``workers`` says over how many); adds ``x_fastest``."""
    keys = GROUP + ["threads", "label", "is_baseline", "backend"]
    out = df.groupby(keys, as_index=False, sort=False).agg(
        median_s=("median_s", "median"), bytes=("bytes", "first"), rounds=("rounds", "sum"),
        x_copy=("x_copy", "median"), x_rng32=("x_rng32", "median"), workers=("worker", "nunique"),
        copy_from=("copy_from", "first"), rng32_from=("rng32_from", "first"), **bandwidth.AGGREGATES)
    out["gbps"] = out["bytes"] / out["median_s"] / 1e9
    out["elems_per_s"] = out["numel"] / out["median_s"]
    fastest = out["median_s"].where(~out["is_baseline"]).groupby([out[k] for k in GROUP + ["threads"]]).transform("min")
    out["x_fastest"] = out["median_s"] / fastest
    return out


# ------------------------------------------------------------------------------------ × best

VERIFY_FILE = "verify.json"
NONCONFORMING = ("fail", "error", "known")
"""Verify statuses that disqualify an API from being the "best conforming" reference."""


def conformance(runs: Sequence[Run], given: Sequence[tuple[Path, dict[str, Any]]] = ()) -> tuple[dict[str, bool], set[str], str]:
    """What decides which APIs conform: (verdicts from verify.json files, APIs with a known divergence, note).

    An API counts as conforming for × best when the verify files given to the report (``given``) or the
    verify.json next to a run's bench json (what ``dropbench run`` writes) have at least one pass and no
    fail, error or known record for it; an API no
    verify.json checked conforms unless backends/known_divergences.toml names it (a static notion: the
    checks are assumed to pass otherwise).
    """
    from suite.verify.known import load_known  # noqa: PLC0415 - only reports need the table

    verdicts: dict[str, bool] = {}
    files, unread = [], []

    def take(records: Iterable[dict[str, Any]]) -> None:
        for record in records:
            api, status = str(record.get("api")), record.get("status")
            if status in NONCONFORMING:
                verdicts[api] = False
            elif status == "pass":
                verdicts.setdefault(api, True)

    for path, payload in given:  # verify files named on the command line
        files.append(str(path))
        take(payload.get("records") or [])
    for run in runs:
        path = run.path.parent / VERIFY_FILE
        if not path.is_file() or any(path.resolve() == Path(f).resolve() for f in files):
            continue
        try:
            records = read_result(path, kind="verify").get("records") or []
        except ResultFileError as exc:
            unread.append(f"{exc} (not used for × best)")
            continue
        files.append(str(path))
        take(records)
    known = {d.api for d in load_known()}
    source = (f"verify results of {', '.join(files)}, else " if files else "") + "no entry in known_divergences.toml"
    note = (f"× best = time ÷ time of the fastest conforming API at the same size, dtype, device, threads and input "
            f"layout (element-wise against element-wise, channel against the same channel layout; conforming: {source})")
    return verdicts, known, "; ".join([note, *unread])


def best_ratios(items: Sequence[tuple[Any, str, float]], conforming: "Any") -> list[float]:
    """time / fastest conforming time of the same group for each (group key, api, seconds); NaN when none conforms."""
    best: dict[Any, float] = {}
    for key, api, seconds in items:
        if conforming(api) and seconds < best.get(key, math.inf):
            best[key] = seconds
    return [seconds / best[key] if key in best else math.nan for key, _, seconds in items]


def attach_best(df: "pd.DataFrame", disp: "pd.DataFrame", runs: Sequence[Run], notes: list[str],
                given: Sequence[tuple[Path, dict[str, Any]]] = ()) -> "pd.DataFrame":
    """disp plus ``x_best`` (baselines get NaN); appends the note that says what "conforming" meant."""
    verdicts, known, note = conformance(runs, given)
    first = df.drop_duplicates(["machine", "label"]).set_index(["machine", "label"])
    at = list(zip(disp["machine"], disp["label"]))
    apis = [first["api"].get(k, k[1]) for k in at]
    keys = [(*r, first["ndim"].get(k, 0)) for r, k in zip(disp[GROUP + ["threads"]].itertuples(index=False), at)]
    items = [(k, "" if b else a, t) for k, a, b, t in zip(keys, apis, disp["is_baseline"], disp["median_s"])]
    ratios = best_ratios(items, lambda api: bool(api) and verdicts.get(api, api not in known))
    out = disp.copy()
    out["x_best"] = [math.nan if b else r for b, r in zip(disp["is_baseline"], ratios)]
    notes.append(note)
    return out


# ------------------------------------------------------------------------------------ tables


def format_rate(per_second: float) -> str:
    """Elements per second with an SI prefix: 6.65e8 -> '665 Mel/s'."""
    for prefix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if float(f"{per_second:.3g}") >= scale:  # 999.7e6 rounds to 1e9: "1 Gel/s", not "1e+03 Mel/s"
            return f"{float(f'{per_second:.3g}') / scale:g} {prefix}el/s"
    return f"{per_second:.3g} el/s"


FASTEST = "fastest"  # the mark on the fastest dropout API of a table's group (baselines never count)


def _throughput_cell(row: Any) -> str:
    rate = format_rate(row.elems_per_s)
    speed = f"{row.gbps:.3g} GB/s, {rate}" if math.isfinite(row.gbps) else rate
    ratio = FASTEST if not row.is_baseline and row.x_fastest == 1.0 else format_ratio(row.x_fastest)
    return f"{format_time(row.median_s)} · {speed} · {ratio}"


def _sorted_labels(sub: "pd.DataFrame") -> list[str]:
    """Dropout APIs fastest first (median time at the largest size they all measured, then the largest each
    measured), then the baselines; ties and APIs missing that size keep name order."""
    apis = sub[~sub["is_baseline"]]
    at = int(max(set.intersection(*[set(g["numel"]) for _, g in apis.groupby("label")]) or {0})) if not apis.empty else 0
    order = []
    for label, g in sub.groupby("label", sort=True):
        hit = g[g["numel"] == at] if at else g.iloc[0:0]
        pick = hit if not hit.empty else g[g["numel"] == g["numel"].max()]
        order.append((bool(g["is_baseline"].iloc[0]), hit.empty, float(pick["median_s"].min()), label))
    return [label for *_, label in sorted(order)]


def _baseline_caption(sub: "pd.DataFrame") -> str:
    parts = []
    for name in BASELINES:
        rows = sub[~sub["is_baseline"]][f"{name}_from"]
        if rows.empty:
            continue
        counts = rows.value_counts()
        if list(counts.index) == ["same worker"]:
            parts.append(f"baseline:{name} from the same worker process for all {len(rows)} rows")
        else:
            parts.append(f"baseline:{name}: " + ", ".join(f"{v} rows {k}" for k, v in counts.items()))
    return "; ".join(parts)


def throughput_tables(df: "pd.DataFrame", disp: "pd.DataFrame", out_dir: Path) -> tuple[list[Table], list[Path]]:
    """Per machine x device x direction: rows (dtype, API), columns size; markdown + wide CSV."""
    import pandas

    tables, files = [], []
    for (machine, device, direction), sub in disp.groupby(["machine", "device", "direction"], sort=True):
        sizes = sorted(sub["numel"].unique())
        rows, csv_rows = [], []
        for dtype, by_dtype in sub.groupby("dtype", sort=True):
            for label in _sorted_labels(by_dtype):
                cells = by_dtype[by_dtype["label"] == label].set_index("numel")
                row = [dtype, label]
                csv_row: dict[str, Any] = {"machine": machine, "device": device, "direction": direction,
                                           "dtype": dtype, "api": label}
                for n in sizes:
                    if n in cells.index:
                        r = cells.loc[n]
                        row.append(_throughput_cell(r))
                        csv_row |= {f"{n} median_s": r.median_s, f"{n} GB/s": r.gbps,
                                    f"{n} elements/s": r.elems_per_s, f"{n} x_fastest": r.x_fastest}
                    else:
                        row.append("—")
                rows.append(row)
                csv_rows.append(csv_row)
        workers = sub[sub["is_baseline"]]["workers"]
        caption = (f"{TIME_NOTE}. Cell: time · GB/s of useful traffic (extra_info.bytes / time), elements/s · time ÷ "
                   f"time of the fastest dropout API at that size and dtype, marked \"{FASTEST}\" (baselines not counted). "
                   "Rows: fastest first at the largest size, baselines last.")
        if not workers.empty:
            caption += f" Baseline rows: median over the {int(workers.max())} worker process(es) that timed them."
        table = Table(f"{machine} · {device} · {DIRECTION_TITLE[direction]}", caption,
                      ["dtype", "API", *[size_label(int(n)) for n in sizes]], rows)
        tables.append(table)
        stem = out_dir / "tables" / _slug(machine) / f"{_slug(device)}-{direction}"
        stem.parent.mkdir(parents=True, exist_ok=True)
        files.append(atomic_write_text(stem.with_suffix(".md"), table.markdown(level=2)))
        files.append(atomic_write_text(stem.with_suffix(".csv"), pandas.DataFrame(csv_rows).to_csv(index=False)))
    return tables, files


def baseline_tables(df: "pd.DataFrame", disp: "pd.DataFrame", out_dir: Path) -> tuple[list[Table], list[Path]]:
    """Per machine x device x dtype: rows (direction, API), columns size, cells 'x copy / x rng32'."""
    tables, md = [], []
    apis = disp[~disp["is_baseline"]]
    for (machine, device, dtype), sub in apis.groupby(["machine", "device", "dtype"], sort=True):
        sizes = sorted(sub["numel"].unique())
        rows = []
        for direction in DIRECTIONS:
            by_dir = sub[sub["direction"] == direction]
            for label in _sorted_labels(by_dir):
                cells = by_dir[by_dir["label"] == label].set_index("numel")
                rows.append([DIRECTION_TITLE[direction], label] + [
                    f"{format_ratio(cells.loc[n].x_copy)} / {format_ratio(cells.loc[n].x_rng32)}" if n in cells.index else "—"
                    for n in sizes])
        raw = df[(df["machine"] == machine) & (df["device"] == device) & (df["dtype"] == dtype)]
        caption = (f"{TIME_NOTE}. Cell: time ÷ baseline:copy time / time ÷ baseline:rng32 time, same size, dtype, "
                   f"device; {_baseline_caption(raw) or 'no baselines in these runs'}.")
        table = Table(f"{machine} · {device} · {dtype} — ratio to baselines", caption,
                      ["direction", "API", *[size_label(int(n)) for n in sizes]], rows)
        tables.append(table)
        md.append(table.markdown(level=2))
    files = []
    if tables:
        files.append(atomic_write_text(out_dir / "baselines.md", "# Ratios to the baselines\n\n" + "\n".join(md)))
        cols = ["machine", "device", "dtype", "direction", "label", "numel", "median_s", "copy_s", "x_copy", "copy_from",
                "rng32_s", "x_rng32", "rng32_from", "worker", "source"]
        files.append(atomic_write_text(out_dir / "baselines.csv", df[~df["is_baseline"]][cols].to_csv(index=False)))
    return tables, files


def _largest_common_size(sub: "pd.DataFrame") -> tuple[int, bool]:
    """Largest size every API of this group measured (in some direction); else the largest size, flagged."""
    per_label = [set(g["numel"]) for _, g in sub[~sub["is_baseline"]].groupby("label")]
    common = set.intersection(*per_label) if per_label else set()
    if common:
        return int(max(common)), True
    return int(sub["numel"].max()), False


def _baseline_spread(raw: "pd.DataFrame | None", at: "pd.DataFrame", machine: str, device: str, dtype: str,
                     numel: int) -> str:
    """'baseline:copy 455 µs–531 µs over 9 workers (median 486 µs)': each row divides by its own worker's."""
    base = at[at["is_baseline"]]
    parts = []
    for r in base.itertuples():
        times = ([] if raw is None else
                 raw[(raw["machine"] == machine) & (raw["device"] == device) & (raw["dtype"] == dtype)
                     & (raw["numel"] == numel) & (raw["label"] == r.label)]["median_s"].tolist())
        if len(times) > 1:
            parts.append(f"{r.label} {format_time(min(times))}–{format_time(max(times))} over {len(times)} workers "
                         f"(median {format_time(r.median_s)})")
        else:
            parts.append(f"{r.label} {format_time(r.median_s)}")
    return ", ".join(parts)


def summary_tables(disp: "pd.DataFrame", raw: "pd.DataFrame | None" = None) -> list[Table]:
    """Per machine x device x dtype at the largest common size: forward and forward+backward time and ratios,
    fastest forward first; the fastest API of each direction is marked."""
    tables = []
    for (machine, device, dtype), sub in disp.groupby(["machine", "device", "dtype"], sort=True):
        if sub[~sub["is_baseline"]].empty:
            continue
        numel, common = _largest_common_size(sub)
        at = sub[sub["numel"] == numel]
        apis = at[~at["is_baseline"]]
        best = {d: apis[apis["direction"] == d]["median_s"].min() for d in DIRECTIONS}
        rows = []
        for label in _sorted_labels(apis[apis["direction"] == "forward"]) + sorted(
                set(apis["label"]) - set(apis[apis["direction"] == "forward"]["label"])):
            row = [label]
            for direction in DIRECTIONS:
                hit = at[(at["label"] == label) & (at["direction"] == direction)]
                if hit.empty:
                    row += ["—", "—", "—", "—"]
                else:
                    r = hit.iloc[0]
                    mark = f" ({FASTEST})" if r.median_s == best[direction] else ""
                    row += [format_time(r.median_s) + mark, format_ratio(r.x_copy), format_ratio(r.x_rng32),
                            format_ratio(getattr(r, "x_best", math.nan))]
            rows.append(row)
        refs = _baseline_spread(raw, at, machine, device, dtype, numel)
        caption = (f"n = {numel:,} elements ({size_label(numel)})"
                   + ("" if common else " — not every API measured this size") + f"; {TIME_NOTE}; sorted by forward time"
                   + (f". × copy / × rng32 divide each row's time by the baselines timed in that row's own worker "
                      f"process, which vary: {refs}" if refs else "; no baselines timed") + ".")
        tables.append(Table(f"{machine} · {device} · {dtype}", caption,
                            ["API", "forward", "× copy", "× rng32", "× best", "fwd+bwd", "× copy", "× rng32", "× best"],
                            rows))
    return tables


def _backend_lines(runs: Sequence[Run]) -> list[str]:
    """Backends that did not run or had failures, incomplete runs, and salvaged rows: never dropped silently."""
    seen: dict[tuple[str, str], str] = {}
    lines = []
    for run in runs:
        for b in run.payload.get("backends") or []:
            if not isinstance(b, dict):
                continue
            if b.get("status") not in (None, "ok"):
                why = b.get("reason") or "no reason given"
                seen[(run.machine_id, str(b.get("backend")))] = f"did not run ({b.get('status')}: {why})"
            elif b.get("reason"):
                seen[(run.machine_id, str(b.get("backend")))] = f"ran with problems: {b['reason']}"
        info = run.payload.get("run") or {}
        if info.get("complete") is False:
            lines.append(f"{run.path}: the run is incomplete (interrupted or still running); rows present are reported")
        salvaged = sum(1 for b in run.payload["benchmarks"] if (b.get("extra_info") or {}).get("salvaged"))
        if salvaged:
            lines.append(f"{run.path}: {salvaged} row(s) salvaged from a worker that did not finish")
    return [f"{machine}: {backend} {why}" for (machine, backend), why in sorted(seen.items())] + lines


def skipped_table(runs: Sequence[Run]) -> Table | None:
    """Cases a bench run did not time (top-level ``skipped``), counted by worker, status and reason."""
    counts: dict[tuple[str, str, str, str, str], int] = {}
    for run in runs:
        for case in run.payload.get("skipped") or []:
            if not isinstance(case, dict):
                continue
            key = (run.machine_id, str(case.get("worker") or case.get("backend") or "?"), str(case.get("status") or "?"),
                   str(case.get("kind") or ""), str(case.get("reason") or "no reason given"))
            counts[key] = counts.get(key, 0) + 1
    if not counts:
        return None
    rows = [[*key, str(n)] for key, n in sorted(counts.items())]
    return Table("Not timed", "Cases the bench runs skipped or lost, with their reasons (one row per reason).",
                 ["machine", "worker", "status", "kind", "reason", "cases"], rows)


def overhead_table(runs: Sequence[Run]) -> Table | None:
    """Runs made with ``dropbench bench --bare-loop``: how far pytest-benchmark is from a bare loop."""
    from suite.bench.cases import OVERHEAD_HEADERS, harness_overhead  # noqa: PLC0415

    rows = [[run.machine_id, run.path.name, *row] for run in runs for row in harness_overhead(run.payload["benchmarks"])]
    if not rows:
        return None
    return Table("Harness overhead", "Cases timed with --bare-loop: pytest-benchmark's median and a timeit-style "
                 "loop over the same closure in the same process right after it (15 rounds of >= 20 ms); "
                 "difference = pytest-benchmark / bare loop - 1.", ["machine", "run", *OVERHEAD_HEADERS], rows)


def machine_table(runs: Sequence[Run]) -> Table:
    rows: dict[str, list[str]] = {}
    for run in runs:
        f = run.payload.get("machine_facts") or {}
        entry = rows.setdefault(run.machine_id, [run.machine_id, str(f.get("cpu", "?")), str(f.get("cores", "?")),
                                                 str(f.get("memory_gib", "?")), f"{f.get('system', '?')}/{f.get('arch', '?')}",
                                                 str(f.get("python", "?")), ""])
        entry[-1] = ", ".join(filter(None, [entry[-1], run.path.name]))
    return Table("Machines", "One row per machine_id; results of different machines are never pooled.",
                 ["machine_id", "cpu", "cores", "memory GiB", "system", "python", "runs"], list(rows.values()))


# ------------------------------------------------------------------------------------ output


@dataclass
class ReportFiles:
    out_dir: Path
    summary_md: Path
    html: Path
    results_csv: Path
    tables: list[Path] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)  # the page's top in one line each (printed by the CLI)

    def all(self) -> list[Path]:
        return [self.summary_md, self.html, self.results_csv, *self.tables, *self.plots]


def _summary_markdown(runs: Sequence[Run], tables: list[Table], notes: list[str]) -> str:
    lines = ["# dropbench summary", "",
             f"Per machine, device and dtype at the largest size every API measured; {TIME_NOTE}. "
             "× copy / × rng32 = time ÷ time of baseline:copy (memory bound) / baseline:rng32 (one 32-bit random "
             "word per element), same size, dtype, device, timed in the same worker process.", ""]
    for table in tables:
        lines.append(table.markdown(level=2))
    if not tables:
        lines += ["No benchmark results in these runs.", ""]
    lines += [f"- {line}" for line in _backend_lines(runs) + notes]
    skipped = skipped_table(runs)
    if skipped:
        total = sum(int(r[-1]) for r in skipped.rows)
        several = len({r[0] for r in skipped.rows}) > 1
        reasons = [f"{r[0] + ': ' if several else ''}{r[1]} {r[2]}: {r[4]} ({r[5]})" for r in skipped.rows]
        shown = "; ".join(reasons[:6]) + (f"; … {len(reasons) - 6} more in report.html" if len(reasons) > 6 else "")
        lines.append(f"- {total} case(s) not timed — {shown}")
    return "\n".join(lines).rstrip() + "\n"


SPEED_DTYPE = "float32"  # the dtype of the page's top speed chart (every dtype has its chart in the details)


def _speed_column(at: "pd.DataFrame") -> str:
    """× copy where this group timed the copy baseline, else × best."""
    apis = at[~at["is_baseline"]]
    return "x_copy" if apis["x_copy"].notna().any() else "x_best"


def _plots(disp: "pd.DataFrame", out_dir: Path, notes: list[str],
           verdicts: dict[str, str] | None = None) -> tuple[list[Path], list[Path]]:
    """(every plot, the speed charts for the page's top: one per machine and device, float32 where timed);
    ``verdicts`` (API id -> verify verdict) colours the names of APIs that are not certified."""
    try:
        from suite.report import plots
    except ImportError as exc:
        notes.append(f"plots skipped: {exc.name or 'matplotlib'} is not installed")
        return [], []
    files, top = [], []
    for (machine, device, dtype), sub in disp.groupby(["machine", "device", "dtype"], sort=True):
        folder = out_dir / "plots" / _slug(machine)
        for direction in DIRECTIONS:
            part = sub[sub["direction"] == direction]
            if direction == "forward_backward":  # baselines are forward-only; draw them for reference
                part = sub[(sub["direction"] == direction) | sub["is_baseline"]]
            if part[~part["is_baseline"]].empty:
                continue
            files.append(plots.throughput_plot(
                part, folder / f"{_slug(device)}-{dtype}-{direction}.png",
                title=f"{machine}\n{device} · {dtype} · {DIRECTION_TITLE[direction]} · median round time"))
        numel, _ = _largest_common_size(sub)
        at = sub[sub["numel"] == numel]
        title = f"{machine}\n{device} · {dtype} · n = {numel:,} ({size_label(numel)}) · median round time"
        files.append(plots.bar_plot(at, folder / f"{_slug(device)}-{dtype}-bars.png", title=title))
        if at[~at["is_baseline"]].empty:
            continue
        column = _speed_column(at)
        speed = plots.ratio_plot(at, folder / f"{_slug(device)}-{dtype}-speed.png", column=column, verdicts=verdicts,
                                 title=f"{machine} · {device} · {dtype} · n = {numel:,} ({size_label(numel)})\n"
                                       f"{plots.RATIO_NAMES[column]}")
        files.append(speed)
        dtypes = set(disp[(disp["machine"] == machine) & (disp["device"] == device)]["dtype"])
        if dtype == SPEED_DTYPE or SPEED_DTYPE not in dtypes:
            top.append(speed)
    return files, top


STYLE = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}"
         "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;"
         "text-align:right;font-variant-numeric:tabular-nums}td:first-child,td:nth-child(2),th{text-align:left}"
         "th{background:#f0f0f0}.caption{color:#444;max-width:1100px}img{max-width:100%;border:1px solid #ddd}"
         # one line per cell (a "time · GB/s, el/s · ratio" cell wrapped into four lines was unreadable); a table
         # wider than the window then scrolls inside its own box instead of widening the page
         "td{white-space:nowrap}.wide{max-width:100%;overflow-x:auto}"
         "details{margin:.4em 0;border-top:1px solid #ddd;padding-top:.3em}"
         "details>summary{font-size:1.15em;font-weight:600;cursor:pointer;padding:.2em 0}"
         "h2{margin:1.1em 0 .3em}.notes{font-size:13px;color:#444}")


def _figure(path: Path, out_dir: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    rel = path.relative_to(out_dir).as_posix()
    return (f"<figure><img alt='{html.escape(rel)}' src='data:image/png;base64,{data}'>"
            f"<figcaption><a href='{html.escape(rel)}'>{html.escape(rel)}</a></figcaption></figure>")


def _details(heading: str, body: str, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}><summary>{html.escape(heading)}</summary>\n{body}</details>"


def _html_page(inputs: Inputs, sections: list[tuple[str, list[Table]]], plot_files: list[Path], top_plots: list[Path],
               out_dir: Path, notes: list[str]) -> str:
    """The top answers the three questions (conformance, the difference map, speed); the tables follow, folded."""
    runs = inputs.runs
    sources = [*[r.path for r in runs], *[p for p, _ in inputs.verify], *[p for p, _ in inputs.probe]]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>dropbench report</title>"
             f"<style>{STYLE}{overview.CSS}</style></head><body><h1>dropbench report</h1>",
             f"<p class='caption'>Inputs: {html.escape(', '.join(str(s) for s in sources))}.</p>"]
    parts.append("<h2>Does each dropout conform? (verify)</h2>")
    if inputs.verify:
        parts.append(overview.conformance_html(overview.api_verdicts([p for _, p in inputs.verify]),
                                               [p for p, _ in inputs.verify]))
    else:
        parts.append("<p class='caption'>No verify results among the inputs (add a verify.json: "
                     "<code>dropbench verify --json</code>).</p>")
    parts.append("<h2>Where do the frameworks differ? (probe)</h2>")
    if inputs.probe:
        parts += [overview.grid_html(payload, path) for path, payload in inputs.probe]
    else:
        parts.append("<p class='caption'>No probe results among the inputs (add a probe.json: "
                     "<code>dropbench probe --json</code>).</p>")
    parts.append("<h2>How fast is each? (bench)</h2>")
    if top_plots:
        parts.append(f"<p class='caption'>{html.escape(TIME_NOTE)}; the largest size every API measured. Other dtypes, "
                     "throughput against size and every number are in the details below.</p>")
        parts += [_figure(p, out_dir) for p in top_plots]
    elif runs:
        parts.append("<p class='caption'>No chart (plots off or nothing timed); the tables are below.</p>")
    else:
        parts.append("<p class='caption'>No bench results among the inputs.</p>")
    lines = _backend_lines(runs) + notes
    if lines:
        parts.append("<div class='notes'>" + "".join(f"<p>• {html.escape(line)}</p>" for line in lines) + "</div>")
    parts.append("<h2>Details</h2>")
    for heading, tables in sections:
        body = "".join(t.html(title=not (len(tables) == 1 and t.title == heading)) for t in tables)
        parts.append(_details(heading, body))
    for path, payload in inputs.verify:
        shown = [r for r in payload.get("records") or [] if r.get("status") != "pass"]
        table = Table(f"Verify records that did not pass ({path})",
                      f"{len(shown)} of {len(payload.get('records') or [])} records; every check id, status and detail.",
                      ["api", "check", "status", "detail"],
                      [[str(r.get("api")), str(r.get("check")), str(r.get("status")), str(r.get("detail"))] for r in shown])
        parts.append(_details(table.title, table.html(title=False)))
    for path, payload in inputs.probe:
        headers, rows = overview.matrix_rows(payload)
        table = Table(f"Probe matrix ({path})", "Each cell's text, as in probe-matrix.md; spec: what the DropoutSpec "
                      "prescribes (blank: silent).", headers, rows)
        parts.append(_details(table.title, table.html(title=False)))
    if plot_files:
        parts.append(_details("Plots", "\n".join(_figure(p, out_dir) for p in plot_files if p not in top_plots)))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def build_report(paths: Sequence[Path | str], out_dir: Path | str, *, plots: bool = True) -> ReportFiles:
    """Load and validate every input (bench, verify or probe; ResultFileError names a bad file), then write all
    outputs into out_dir: report.html (the page), summary.md, results.csv, tables and plots."""
    inputs = load_inputs(paths)
    runs = inputs.runs
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df, notes = results_frame(runs)
    files = ReportFiles(out, out / "summary.md", out / "report.html", out / "results.csv", notes=notes)
    sections: list[tuple[str, list[Table]]] = [("Machines", [machine_table(runs)])] if runs else []
    skipped = skipped_table(runs)
    summary: list[Table] = []
    bw_tables: list[Table] = []
    top: list[Path] = []
    if df.empty:
        atomic_write_text(files.results_csv, "")
    else:
        atomic_write_text(files.results_csv, df.to_csv(index=False))
        disp = attach_best(df, display_frame(df), runs, notes, inputs.verify)
        summary = summary_tables(disp, df)
        bw_tables = bandwidth.bandwidth_tables(disp, _largest_common_size, Table)
        base_tables, base_files = baseline_tables(df, disp, out)
        tp_tables, tp_files = throughput_tables(df, disp, out)
        files.tables = tp_files + base_files
        sections += [("Summary at the largest common size", summary), ("Ratios to the baselines", base_tables),
                     ("Bandwidth", bw_tables), ("Throughput", tp_tables)]
        if plots:
            verdicts = {v.api: v.verdict for v in overview.api_verdicts([p for _, p in inputs.verify])}
            files.plots, top = _plots(disp, out, notes, verdicts)
    overhead = overhead_table(runs)
    if overhead:
        summary = [*summary, overhead]
        sections.append(("Harness overhead", [overhead]))
    if skipped:
        sections.append(("Not timed", [skipped]))
    atomic_write_text(files.summary_md, _summary_markdown(runs, [*summary, *bw_tables], notes))
    atomic_write_text(files.html, _html_page(inputs, sections, files.plots, top, out, notes))
    files.answers = overview.answer_lines([p for _, p in inputs.verify], [p for _, p in inputs.probe])
    return files
