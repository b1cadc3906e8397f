"""`dropbench report FILE.json ...`: one page (report.html) from any mix of bench, verify and probe files, plus
the tables, plots and summary.md of the benchmark runs among them."""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

NAME = "report"
HELP = "one page (report.html: conformance, difference map, speed) from bench/verify/probe files, plus tables, plots, summary.md"


def output_dir(text: str) -> Path:
    """A folder that exists or can be made and accepts files, checked before any work."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".dropbench-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot write to {text!r}: {exc.strerror or exc}") from None
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", type=Path, metavar="FILE.json",
                        help="files from `dropbench bench/verify/probe --json` (any mix, any machines), folders of "
                             "`dropbench run` (their bench/verify/probe.json), or a device run's archive (gpu-run.tar.gz)")
    parser.add_argument("--out", type=output_dir, default=Path("report"), metavar="DIR",
                        help="output folder (default ./report)")
    parser.add_argument("--no-plots", action="store_true", help="skip the matplotlib plots")


def run(args: argparse.Namespace) -> int:
    from suite.runtime.loader import UsageError

    try:
        from suite.report.build import build_report
    except ImportError as exc:  # pandas / matplotlib are in the `all` extra, not the core install
        raise UsageError(f"report needs {exc.name or 'pandas'}: pip install 'dropbench[all]'") from None
    from suite.runtime.archive import result_files

    with tempfile.TemporaryDirectory(prefix="dropbench-report-") as scratch:
        files = build_report(result_files(list(args.runs), Path(scratch)), args.out, plots=not args.no_plots)
    print(files.summary_md.read_text(encoding="utf-8"))  # notes and skipped backends are listed in it
    for line in files.answers:
        print(line)
    print(f"report: {len(files.tables)} table files, {len(files.plots)} plots, {files.html}")
    return 0
