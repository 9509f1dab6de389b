"""The per-day monitoring report, as a person opens it: the files, and the page in headless Chromium.

The drift and performance rows are small synthetic frames in the monitoring tables' schemas:
eight days, V4 out of band and drifted from the fifth day on, V11 out of band on the third day
only, the score's alert rate above its band on the last day, labels for all days but the seventh.
The browser tests are skipped when ``chromium`` is not on PATH (Debian: ``apt-get install
--no-install-recommends chromium``); they install nothing. To look at the page:
``MONITOR_REPORT_SCREENSHOTS=/some/folder pytest tests/test_monitor_report.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipelines.data.schema import FEATURE_COLS
from pipelines.monitoring.report import ReportFiles, write_report
from pipelines.monitoring.tables import ALERT, OK, SCORE_COLUMN

CHROMIUM = shutil.which("chromium")
MODEL_NAME, MODEL_VERSION = "fraud_detector", "3"
FIRST_DAY = date(2026, 11, 18)
DAYS = [FIRST_DAY + timedelta(days=offset) for offset in range(8)]
LAST_DAY = DAYS[-1]
DRIFTED_FROM = DAYS[4]
LIMITED_METRICS = {"psi": 0.1, "js_distance": 0.08, "wasserstein_std": 0.1, "ks": 0.05, "null_share": 0.01,
                   "out_of_range_share": 0.002}
THRESHOLD = 0.35
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REASONS = ["V4 drifted: out of band on 4 of the last 5 days",
           "alert rate 0.0015 is outside the baseline 0.001 ± 0.0003",
           "AUC-PR <b>falling</b> & under watch"]  # markup in a reason must show as text


def drift_rows(days: list[date], *, last_alert_rate: float = 0.0015) -> pd.DataFrame:
    """monitor_drift rows: every feature within its limits except V4 (from DRIFTED_FROM on) and
    V11 (on the third day), the alert rate within its band except on the last day; Amount has no
    'ks' row and a NaN psi on the first day."""
    rows = []

    def add(day: date, column: str, kind: str, metric: str, value: float, limit: float | None,
            baseline: float | None = None, out_of_band: bool | None = None, drifted: bool = False) -> None:
        if out_of_band is None:
            out_of_band = limit is not None and value > limit
        rows.append({"txn_date": day, "model_name": MODEL_NAME, "model_version": MODEL_VERSION, "column": column,
                     "kind": kind, "metric": metric, "value": value, "baseline": baseline, "band": limit,
                     "limit": limit, "out_of_band": out_of_band if limit is not None else None,
                     "drifted": drifted, "rows": 120_000, "scored_at": pd.Timestamp(day),
                     "computed_at": pd.Timestamp(day)})

    for index, day in enumerate(days):
        for column in FEATURE_COLS:
            shifted = column == "V4" and day >= DRIFTED_FROM
            for metric, limit in LIMITED_METRICS.items():
                if column == "Amount" and metric == "ks":
                    continue
                value = limit * (0.2 + 0.05 * (index % 4))
                if shifted or (column == "V11" and index == 2 and metric == "psi"):
                    value = limit * 2.4
                if column == "Amount" and metric == "psi" and index == 0:
                    value = float("nan")
                add(day, column, "input", metric, value, limit, drifted=shifted)
            add(day, column, "input", "mean", 0.01 * index, None, baseline=0.0)
        alert_rate = last_alert_rate if day == days[-1] else 0.00105
        add(day, SCORE_COLUMN, "score", "alert_rate", alert_rate, 0.0003, baseline=0.001,
            out_of_band=abs(alert_rate - 0.001) > 0.0003)
        for metric, limit in LIMITED_METRICS.items():
            add(day, SCORE_COLUMN, "score", metric, limit * 0.5, limit)
        add(day, SCORE_COLUMN, "score", "expected_frauds", 190.0, None, baseline=200.0)
    return pd.DataFrame(rows)


def performance_rows(days: list[date]) -> pd.DataFrame:
    """monitor_performance rows for every day but the seventh (its labels are late); the last
    day's AUC-PR is under its limit (warn)."""
    rows = []
    for index, day in enumerate(days):
        if index == 6:
            continue
        auc_pr = 0.62 if day == days[-1] else 0.80 - 0.01 * index
        figures = {"auc_pr": (auc_pr, 0.06, 0.7, None), "recall": (0.78, 0.05, 0.6, None),
                   "precision": (0.7, 0.06, 0.5, None), "alerts_per_100k": (110.0, 15.0, 60.0, 150.0),
                   "fraud_amount_caught_share": (0.8, 0.05, None, None)}
        for metric, (value, half_width, limit_low, limit_high) in figures.items():
            status = "warn" if limit_low is not None and value < limit_low else "ok"
            rows.append({"txn_date": day, "model_name": MODEL_NAME, "model_version": MODEL_VERSION,
                         "metric": metric, "value": value, "lower": value - half_width, "upper": value + half_width,
                         "limit_low": limit_low, "limit_high": limit_high, "status": status,
                         "labelled_rows": 120_000, "frauds": 210, "labels_fingerprint": "abc",
                         "computed_at": pd.Timestamp(day)})
    return pd.DataFrame(rows)


def score_bins() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quantile-like fine bins of a fraud probability, the baseline's counts, and today's with
    more weight in the upper tail."""
    edges = np.array([0.0005, 0.001, 0.002, 0.004, 0.008, 0.02, 0.05, 0.1, 0.2, 0.35, 0.6, 0.9])
    baseline_counts = np.array([30_000, 30_000, 20_000, 15_000, 10_000, 8_000, 4_000, 2_000, 600, 250, 80, 50, 20.0])
    day_counts = np.array([25_000, 28_000, 21_000, 16_000, 11_000, 9_000, 5_000, 3_000, 1_000, 400, 120, 70, 30.0])
    return edges, baseline_counts, day_counts


def report(folder: Path, *, days: list[date], performance: pd.DataFrame, verdict: str, reasons: list[str],
           drift: pd.DataFrame | None = None) -> ReportFiles:
    edges, baseline_counts, day_counts = score_bins()
    drift = drift_rows(days) if drift is None else drift
    return write_report(folder, day=days[-1], model_name=MODEL_NAME, model_version=MODEL_VERSION, verdict=verdict,
                        reasons=reasons, drift=drift, performance=performance, score_edges=edges,
                        baseline_score_counts=baseline_counts, day_score_counts=day_counts, threshold=THRESHOLD)


@pytest.fixture(scope="module")
def eight_days(tmp_path_factory) -> ReportFiles:
    """The last day's report over all eight days, written once for the tests that only read it."""
    return report(tmp_path_factory.mktemp("report"), days=DAYS, performance=performance_rows(DAYS), verdict=ALERT,
                  reasons=REASONS)


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by playwright, shared by this module's page tests."""
    if CHROMIUM is None:
        pytest.skip("chromium is not on PATH (Debian: apt-get install --no-install-recommends chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            yield launched
        finally:
            launched.close()


def open_page(browser, files: ReportFiles, screenshot: Path):
    """The report opened from its file:// URL; fails if the page asks for anything else."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(files.html.as_uri())
    page.wait_for_load_state("load")
    assert [url for url in requested if not url.startswith(("file://", "data:"))] == []
    page.screenshot(path=str(screenshot), full_page=True)
    if folder := os.environ.get("MONITOR_REPORT_SCREENSHOTS"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / screenshot.name), full_page=True)
    return page


def assert_page_reads(page, *, verdict: str, reasons: list[str]) -> None:
    widths = page.eval_on_selector_all("img", "images => images.map(image => image.complete ? image.naturalWidth : 0)")
    assert len(widths) == 3 and all(width > 0 for width in widths), widths
    word = page.locator("#verdict .word")
    assert word.is_visible() and word.inner_text() == verdict.upper()
    shown = page.locator("#reasons li").all_inner_texts()
    assert shown == reasons
    for reason in reasons:
        assert page.get_by_text(reason, exact=True).is_visible()


def assert_not_blank(screenshot: Path) -> None:
    with Image.open(screenshot) as picture:
        grey = np.asarray(picture.convert("L"), dtype=float)
    assert grey.shape[0] > 900 and grey.shape[1] >= 1280  # the full page, pictures included
    assert grey.std() > 10 and len(np.unique(grey)) > 50


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as picture:
        picture.verify()
    with Image.open(path) as picture:
        assert picture.format == "PNG" and picture.width > 400 and picture.height > 300


# --- files -----------------------------------------------------------------------------------------
def test_the_report_is_one_page_and_three_pictures_under_the_versions_folder(eight_days):
    files = eight_days

    folder = files.html.parent
    assert folder.name == f"{MODEL_NAME}-v{MODEL_VERSION}"
    assert files == ReportFiles(html=folder / "2026-11-25.html", pictures=[
        folder / "2026-11-25-drift.png", folder / "2026-11-25-score.png", folder / "2026-11-25-performance.png"])
    # Nothing else: no temporary file is left behind.
    assert sorted(path.name for path in folder.iterdir()) == sorted(
        path.name for path in [files.html, *files.pictures])
    for picture in files.pictures:
        assert_png(picture)
    page = files.html.read_text(encoding="utf-8")
    assert page.count('src="data:image/png;base64,') == 3
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "AUC-PR &lt;b&gt;falling&lt;/b&gt; &amp; under watch" in page


def test_a_rerun_of_the_day_replaces_its_files(tmp_path):
    first = report(tmp_path, days=DAYS, performance=performance_rows(DAYS), verdict=ALERT, reasons=REASONS)
    second = report(tmp_path, days=DAYS, performance=performance_rows(DAYS), verdict=OK, reasons=[])

    assert second == first
    assert len(list(first.html.parent.iterdir())) == 4
    assert ">OK<" in second.html.read_text(encoding="utf-8")


def test_the_table_of_the_day_lists_the_drifted_column_and_the_alert_rate_only(eight_days):
    table = eight_days.html.read_text(encoding="utf-8").split('id="drift-table"')[1].split("</table>")[0]
    # V4's six limited metrics at 2.4 x their limit, then the alert rate at |0.0015 - 0.001| / 0.0003.
    assert table.count("<td class=\"text\">V4</td>") == 6
    assert table.count("<td>2.4</td>") == 6
    assert f"<td class=\"text\">{SCORE_COLUMN}</td><td class=\"text\">alert_rate</td>" in table
    assert "<td>1.667</td>" in table
    assert "V11" not in table  # out of band on the third day, not today


def test_bad_input_is_refused_before_anything_is_written(tmp_path):
    edges, baseline_counts, day_counts = score_bins()
    arguments = {"day": LAST_DAY, "model_name": MODEL_NAME, "model_version": MODEL_VERSION, "verdict": ALERT,
                 "reasons": REASONS, "drift": drift_rows(DAYS), "performance": performance_rows(DAYS),
                 "score_edges": edges, "baseline_score_counts": baseline_counts,
                 "day_score_counts": day_counts, "threshold": THRESHOLD}

    with pytest.raises(ValueError, match="day_score_counts must have len"):
        write_report(tmp_path, **{**arguments, "day_score_counts": day_counts[:-1]})
    with pytest.raises(ValueError, match="verdict must be one of"):
        write_report(tmp_path, **{**arguments, "verdict": "fine"})
    with pytest.raises(Exception, match=r"missing column\(s\) \['limit'\]"):
        write_report(tmp_path, **{**arguments, "drift": drift_rows(DAYS).drop(columns=["limit"])})
    assert list(tmp_path.iterdir()) == []


def test_the_report_module_does_not_import_pyspark():
    done = subprocess.run([sys.executable, "-c", "import sys; sys.modules['pyspark'] = None\n"
                           "import pipelines.monitoring.report"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]


# --- the page in a real browser ---------------------------------------------------------------------
def test_the_page_shows_its_pictures_verdict_and_reasons(browser, eight_days, tmp_path):
    screenshot = tmp_path / "report.png"

    page = open_page(browser, eight_days, screenshot)
    try:
        assert_page_reads(page, verdict=ALERT, reasons=REASONS)
        assert page.locator("#performance-table td.status").all_inner_texts() == ["warn", "ok", "ok", "ok", "ok"]
    finally:
        page.close()
    assert_not_blank(screenshot)


def test_one_calm_day_without_labels_still_reads(browser, tmp_path):
    reasons = ["nothing out of band"]
    calm = drift_rows([FIRST_DAY], last_alert_rate=0.001)
    files = report(tmp_path, days=[FIRST_DAY], performance=pd.DataFrame(), verdict=OK, reasons=reasons, drift=calm)
    screenshot = tmp_path / "one-day.png"

    for picture in files.pictures:
        assert_png(picture)
    page = open_page(browser, files, screenshot)
    try:
        assert_page_reads(page, verdict=OK, reasons=reasons)
        assert page.locator("#performance-table").inner_text() == "No labels yet for this day."
        assert page.locator("#drift-table").inner_text() == "No column is out of band or drifted today."
    finally:
        page.close()
    assert_not_blank(screenshot)
