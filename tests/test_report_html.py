"""probe report --format html: one self-contained page, opened in headless Chromium, renders
without console errors with each plot present, and fetches nothing; a screenshot is kept
under the test's tmp dir."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests import report_data
from tests.prerequisites import missing

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")  # fmt: skip
PLOTS = ("plot-timeline", "plot-throughput", "plot-hours")
ROOT = Path(__file__).resolve().parent.parent


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    profile.mkdir()
    return subprocess.run(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def test_the_html_report_renders_offline_with_every_plot(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        missing(f"no headless Chromium at {CHROMIUM} (apt-get install chromium)")
    db, page = tmp_path / "results.db", tmp_path / "report.html"
    report_data.fill(str(db))
    proc = subprocess.run(
        [sys.executable, "-m", "probe", "report", "--db", str(db), "--format", "html", "-o", str(page)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    html = page.read_text(encoding="utf-8")
    # Nothing to fetch: no src or href names a network address (text may mention one).
    assert re.findall(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I) == []
    assert "<script" not in html and "@import" not in html and "url(" not in html
    for plot in PLOTS:
        assert re.search(rf'<figure id="{plot}"><img [^>]*src="data:image/png;base64,', html)

    dom = _chromium(tmp_path, "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    for plot in PLOTS:
        assert f'id="{plot}"' in dom.stdout
    assert "throttled mostly 18:00-24:00 UTC" in dom.stdout
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    assert console == [], console

    shot = tmp_path / "report.png"
    done = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,2000", page.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
