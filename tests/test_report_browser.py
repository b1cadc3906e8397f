"""report.html in a real browser (issues 16, 27): headless Chromium renders it offline, every image decodes,
the difference map's grid renders every cell in colour, every table renders (the details opened), nothing
overflows the page width at 1280 px (folded or unfolded), and a screenshot is taken.

Needs Debian's `chromium` (.ci/run installs it); skipped with that reason where it is missing.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="the report's plots need matplotlib")
pytest.importorskip("pandas", reason="the report needs pandas")

from suite.report.build import build_report  # noqa: E402
from suite.runtime.jsonio import atomic_write_json  # noqa: E402
from tests.fixtures.synthetic_bench import synthetic_run, write_run  # noqa: E402
from tests.fixtures.synthetic_checks import PROBE_APIS, probe_payload, verify_payload  # noqa: E402

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed "
                                "(apt-get install chromium; .ci/run installs it)")
WIDTH = 1280
SIZES = tuple(1 << k for k in range(12, 25, 2))  # the default 7 sizes: the widest tables a report has

# Runs after every image has loaded (the load event) and leaves its findings in the DOM for --dump-dom.
CHECK = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images].map(i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 0}));
  const cells = [...document.querySelectorAll('table.grid td.cell')].map(c => {
    const r = c.getBoundingClientRect();
    return {w: r.width, h: r.height, bg: getComputedStyle(c).backgroundColor, right: r.right};
  });
  const foldedWidth = document.documentElement.scrollWidth;
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  const tables = [...document.querySelectorAll('table')].map(t => {
    const r = t.getBoundingClientRect();
    return {rows: t.rows.length, cells: t.querySelectorAll('td').length, width: r.width, height: r.height};
  });
  const pre = document.createElement('pre');
  pre.id = 'dropbench-check';
  pre.textContent = JSON.stringify({imgs, cells, tables, foldedWidth, scrollWidth: document.documentElement.scrollWidth,
                                    innerWidth: window.innerWidth});
  document.body.appendChild(pre);
});
</script>"""


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
             "--host-resolver-rules=MAP * ~NOTFOUND",  # offline: any network lookup fails
             f"--user-data-dir={profile}", "--virtual-time-budget=10000"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    inputs = [write_run(tmp / "r.json", synthetic_run(sizes=SIZES, noise=0.0)),
              atomic_write_json(tmp / "verify.json", verify_payload()), atomic_write_json(tmp / "probe.json", probe_payload())]
    files = build_report(inputs, tmp / "out", plots=True)
    return files, tmp


def test_report_renders_in_chromium_with_every_image_and_table_and_no_overflow(report) -> None:
    files, tmp = report
    page = files.html.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=['"]https?:""", page)  # self-contained: nothing to fetch
    probe = files.html.with_name("check.html")
    probe.write_text(page.replace("</body>", CHECK + "</body>"), encoding="utf-8")
    proc = _chromium(f"--window-size={WIDTH},900", "--dump-dom", probe.as_uri(), profile=tmp / "profile")
    found = re.search(r'<pre id="dropbench-check">(.*?)</pre>', proc.stdout, flags=re.S)
    assert found, (proc.returncode, proc.stderr[-2000:])
    result = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert len(result["imgs"]) == len(files.plots) >= 4
    assert all(img["ok"] for img in result["imgs"]), [i["alt"] for i in result["imgs"] if not i["ok"]]
    n_cases = len({r["case"] for r in probe_payload()["records"]})
    assert len(result["cells"]) == len(PROBE_APIS) * n_cases  # the grid: one cell per API and case
    assert all(c["w"] >= 10 and c["h"] >= 10 and c["right"] <= WIDTH for c in result["cells"]), result["cells"][:3]
    assert all(c["bg"] not in ("", "rgba(0, 0, 0, 0)") for c in result["cells"])  # coloured (n/a is white)
    assert len({c["bg"] for c in result["cells"]}) >= 4  # several outcome classes, told apart by colour
    assert result["foldedWidth"] <= WIDTH, result["foldedWidth"]
    assert len(result["tables"]) == page.count("<table") >= 7  # the details' tables, the conformance table, the grid
    for table in result["tables"]:
        assert table["rows"] >= 2 and table["cells"] > 0 and table["width"] > 0 and table["height"] > 0, table
    assert result["innerWidth"] == WIDTH
    assert result["scrollWidth"] <= result["innerWidth"], result["scrollWidth"]  # no sideways page scroll


def test_report_screenshot(report) -> None:
    files, tmp = report
    shot = Path(os.environ.get("DROPBENCH_SCREENSHOT", tmp / "report.png"))
    proc = _chromium(f"--window-size={WIDTH},2400", f"--screenshot={shot}", files.html.as_uri(), profile=tmp / "profile2")
    assert shot.is_file(), proc.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
