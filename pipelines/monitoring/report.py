"""The per-day monitoring report: one self-contained HTML page and its three pictures.

The ``monitor`` job calls :func:`write_report` after it wrote a day's rows of ``monitor_drift``
and ``monitor_performance`` (as pandas frames) and decided the day's verdict. The page embeds
its pictures as base64 data URIs, so it renders from a ``file://`` URL and in MLflow's artifact
viewer alike; the same pictures are also written as PNG files next to it.

Pictures are built with matplotlib's object API (no pyplot: no display, no global state). This
module reads no table and no clock and never imports pyspark.
"""

from __future__ import annotations

import base64
import html
import io
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import dates as mdates
from matplotlib.colors import LinearSegmentedColormap, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from pipelines.data.schema import FEATURE_COLS, require_columns
from pipelines.monitoring.tables import ALERT, OK, SCORE_COLUMN, WARN

DRIFT_COLUMNS = ["txn_date", "model_name", "model_version", "column", "kind", "metric", "value", "baseline",
                 "limit", "out_of_band", "drifted", "rows"]
PERFORMANCE_COLUMNS = ["txn_date", "model_name", "model_version", "metric", "value", "lower", "upper",
                       "limit_low", "limit_high", "status", "labelled_rows", "frauds"]
# For the alert rate the limit bounds the distance from the baseline, not the value itself.
DISTANCE_METRICS = {"alert_rate"}
# Ratios above this all look equally alarming: the colour scale stops here.
RATIO_CLIP = 3.0
PER_100K = 100_000
VERDICT_COLOURS = {OK: "#1a7f37", WARN: "#b35900", ALERT: "#c62828"}
STATUS_COLOURS = {OK: "#1a7f37", WARN: "#e08a00", ALERT: "#c62828"}
# Pale blue below the limit, orange to dark red above it: the jump at 1.0 makes the limit visible.
RATIO_COLOURS = LinearSegmentedColormap.from_list(
    "calm_then_alarming",
    [(0.0, "#f4f8fb"), (0.4999, "#a9c6e0"), (0.5, "#fdbb84"), (0.75, "#e34a33"), (1.0, "#7f0000")],
).with_extremes(bad="#d9d9d9")
DPI = 110


@dataclass(frozen=True)
class ReportFiles:
    """What :func:`write_report` wrote: the HTML page and the PNG pictures (drift, score,
    performance, in that order)."""

    html: Path
    pictures: list[Path]


def write_report(folder: str | Path, *, day: date, model_name: str, model_version: str,
                 verdict: str, reasons: list[str], drift: pd.DataFrame, performance: pd.DataFrame,
                 score_edges: np.ndarray, baseline_score_counts: np.ndarray, day_score_counts: np.ndarray,
                 threshold: float) -> ReportFiles:
    """Write the day's report of one model version under ``folder/<model_name>-v<model_version>/``.

    Files: ``<day>.html`` (self-contained) and ``<day>-drift.png``, ``<day>-score.png``,
    ``<day>-performance.png``. Each is written to a temporary file in the same folder and then
    renamed, so a half-written file never exists; the pictures go first, the page last. A rerun
    of the day replaces its files.

    :param drift: rows of ``monitor_drift`` (``DRIFT_SCHEMA``) for the days up to ``day``; rows
        of other versions or of later days are ignored.
    :param performance: rows of ``monitor_performance`` for the same days; may be empty (no
        labels yet), even without columns.
    :param score_edges: the score's fine bins' inner cut points (length m - 1).
    :param baseline_score_counts: the baseline's counts over the m fine bins.
    :param day_score_counts: the day's counts over the same bins.
    :param threshold: the decision threshold, on the score's scale.
    :raises SchemaError: a frame lacks a column the report reads.
    :raises ValueError: an unknown verdict, or counts that do not match the edges.

    Example::

        files = write_report("reports", day=date(2026, 11, 25), model_name="fraud_detector",
                             model_version="3", verdict="warn", reasons=["V4 out of band"],
                             drift=drift_pdf, performance=performance_pdf, score_edges=edges,
                             baseline_score_counts=baseline_counts, day_score_counts=day_counts,
                             threshold=0.42)
    """
    score_edges, baseline_score_counts, day_score_counts = _checked_bins(
        score_edges, baseline_score_counts, day_score_counts)
    if verdict not in VERDICT_COLOURS:
        raise ValueError(f"verdict must be one of {sorted(VERDICT_COLOURS)}; got {verdict!r}")
    drift = _prepared_drift(drift, model_name=model_name, model_version=model_version, day=day)
    performance = _prepared_performance(performance, model_name=model_name, model_version=model_version, day=day)

    pictures = {
        "drift": _png(_drift_heatmap_figure(drift, day=day)),
        "score": _png(_score_distribution_figure(score_edges, baseline_score_counts, day_score_counts,
                                                threshold=threshold)),
        "performance": _png(_performance_figure(drift, performance, day=day)),
    }
    page = _html_page(day=day, model_name=model_name, model_version=model_version, verdict=verdict,
                      reasons=reasons, drift=drift, performance=performance, pictures=pictures)

    target = Path(folder) / f"{model_name}-v{model_version}"
    target.mkdir(parents=True, exist_ok=True)
    picture_paths = []
    for name, content in pictures.items():
        path = target / f"{day.isoformat()}-{name}.png"
        _write_atomically(path, content)
        picture_paths.append(path)
    html_path = target / f"{day.isoformat()}.html"
    _write_atomically(html_path, page.encode("utf-8"))
    return ReportFiles(html=html_path, pictures=picture_paths)


# --- inputs ---------------------------------------------------------------------------------------
def _checked_bins(edges: np.ndarray, baseline_counts: np.ndarray,
                  day_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three arrays as floats, after checking that both counts have one entry per fine bin."""
    edges = np.asarray(edges, dtype=float).ravel()
    baseline_counts = np.asarray(baseline_counts, dtype=float).ravel()
    day_counts = np.asarray(day_counts, dtype=float).ravel()
    for name, counts in (("baseline_score_counts", baseline_counts), ("day_score_counts", day_counts)):
        if len(counts) != len(edges) + 1:
            raise ValueError(f"{name} must have len(score_edges) + 1 = {len(edges) + 1} entries; "
                             f"got {len(counts)}")
    return edges, baseline_counts, day_counts


def _prepared_drift(drift: pd.DataFrame, *, model_name: str, model_version: str, day: date) -> pd.DataFrame:
    """The version's drift rows up to ``day``, with plain dates, float values and True/False flags
    (a null flag counts as False), and each row's value / limit ratio."""
    require_columns(drift.columns, DRIFT_COLUMNS, source="drift rows (monitor_drift)")
    frame = _rows_of(drift, model_name=model_name, model_version=model_version, day=day)
    for column in ("value", "baseline", "limit", "rows"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    for flag in ("out_of_band", "drifted"):
        frame[flag] = frame[flag].eq(True)
    frame["ratio"] = _limit_ratios(frame)
    return frame


def _prepared_performance(performance: pd.DataFrame, *, model_name: str, model_version: str,
                          day: date) -> pd.DataFrame:
    """The version's performance rows up to ``day``, with plain dates and float values; an empty
    frame (with the expected columns) when there are none."""
    if performance.empty:
        return pd.DataFrame({column: pd.Series(dtype=object) for column in PERFORMANCE_COLUMNS})
    require_columns(performance.columns, PERFORMANCE_COLUMNS, source="performance rows (monitor_performance)")
    frame = _rows_of(performance, model_name=model_name, model_version=model_version, day=day)
    for column in ("value", "lower", "upper", "limit_low", "limit_high", "labelled_rows", "frauds"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return frame


def _rows_of(frame: pd.DataFrame, *, model_name: str, model_version: str, day: date) -> pd.DataFrame:
    """A copy of the rows of one model version on or before ``day``, ``txn_date`` as ``date``."""
    frame = frame.copy()
    frame["txn_date"] = pd.to_datetime(frame["txn_date"]).dt.date
    keep = ((frame["model_name"] == model_name) & (frame["model_version"].astype(str) == str(model_version))
            & (frame["txn_date"] <= day))
    return frame[keep].reset_index(drop=True)


def _limit_ratios(frame: pd.DataFrame) -> pd.Series:
    """Each row's distance from alarm as value / limit (1.0 = at the limit); NaN without a limit.

    For the alert rate the distance is |value - baseline|. A zero limit gives 0 for a zero
    distance and infinity otherwise.
    """
    distance = frame["value"].where(~frame["metric"].isin(DISTANCE_METRICS),
                                    (frame["value"] - frame["baseline"]).abs())
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = distance / frame["limit"]
    ratio = ratio.mask((frame["limit"] == 0) & (distance == 0), 0.0)
    return ratio.where(frame["limit"].notna())


def _ordered_columns(columns: Iterable[str]) -> list[str]:
    """Feature columns in the model's order (V1..V28, Amount), any others after, alphabetically."""
    present = set(columns)
    known = [column for column in FEATURE_COLS if column in present]
    return known + sorted(present - set(known))


# --- picture 1: drift per column and day --------------------------------------------------------------
@dataclass(frozen=True)
class _Grid:
    """One block of the heat map: its rows' names, the ratio per cell and the two marks."""

    columns: list[str]
    ratios: np.ndarray
    drifted: np.ndarray
    out_of_band: np.ndarray


def _drift_grid(drift: pd.DataFrame, columns: list[str], days: list[date]) -> _Grid:
    """Per (column, day): the worst ratio over the metrics that have a limit, drifted, and out of
    band on any metric. A day without rows for a column is NaN and unmarked."""
    rows = drift[drift["column"].isin(columns)]
    by_cell = rows.groupby(["column", "txn_date"])
    shape_index = pd.MultiIndex.from_product([columns, days], names=["column", "txn_date"])

    def cells(values: pd.Series, fill: float | bool) -> np.ndarray:
        return values.reindex(shape_index, fill_value=fill).to_numpy().reshape(len(columns), len(days))

    return _Grid(
        columns=columns,
        ratios=cells(by_cell["ratio"].max().astype(float), np.nan),
        drifted=cells(by_cell["drifted"].any(), False).astype(bool),
        out_of_band=cells(by_cell["out_of_band"].any(), False).astype(bool),
    )


def _drift_heatmap_figure(drift: pd.DataFrame, *, day: date) -> Figure:
    """Heat map of drift: one row per feature (the score in its own block below), one column per
    calendar day, the cell's colour its worst value / limit (clipped at ``RATIO_CLIP``, grey when
    there is none); a cross marks a drifted column, a ring one out of band that day without being
    drifted. ``drift`` as prepared by :func:`_prepared_drift`."""
    # Every calendar day, so a day that was not monitored shows as a grey column, not as no column.
    days = _calendar(min([*drift["txn_date"], day]), day)
    inputs = _ordered_columns(drift.loc[drift["kind"] != "score", "column"])
    scores = _ordered_columns(drift.loc[drift["kind"] == "score", "column"])
    grids = [_drift_grid(drift, block, days) for block in (inputs, scores) if block]

    # Wide enough for the title even with a day or two.
    width = min(max(7.5, 3.2 + 0.32 * len(days)), 16)
    height = 1.9 + 0.24 * sum(len(grid.columns) for grid in grids)
    figure = Figure(figsize=(width, height), layout="constrained")
    if not grids:
        axes = figure.subplots()
        axes.set_axis_off()
        axes.text(0.5, 0.5, "no drift rows", ha="center", va="center", fontsize=14, color="grey")
        return figure

    blocks = figure.subplots(len(grids), 1, sharex=True, squeeze=False,
                             gridspec_kw={"height_ratios": [max(len(grid.columns), 1.4) for grid in grids]})[:, 0]
    norm = TwoSlopeNorm(vmin=0.0, vcenter=1.0, vmax=RATIO_CLIP)
    today = days.index(day)
    for axes, grid in zip(blocks, grids, strict=True):
        image = _draw_grid(axes, grid, norm=norm, today=today)
    _label_days(blocks[-1], days, today)
    blocks[0].set_title(f"Drift per column: worst value / limit, {days[0]:%Y-%m-%d} to {days[-1]:%Y-%m-%d}"
                        f" (today outlined)", fontsize=10)

    colour_bar = figure.colorbar(image, ax=list(blocks), shrink=0.8, pad=0.02)
    colour_bar.set_ticks([0, 0.5, 1, 2, RATIO_CLIP], labels=["0", "0.5", "1 = limit", "2", f"≥ {RATIO_CLIP:g}"])
    colour_bar.ax.tick_params(labelsize=8)
    figure.legend(handles=[
        Line2D([], [], marker="x", color="black", linestyle="none", markersize=7, label="drifted"),
        Line2D([], [], marker="o", markerfacecolor="none", color="black", linestyle="none", markersize=6,
               label="out of band that day (not drifted)"),
        Patch(facecolor="#d9d9d9", label="no value"),
    ], loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    return figure


def _draw_grid(axes, grid: _Grid, *, norm: TwoSlopeNorm, today: int) -> AxesImage:
    """One block of the heat map: coloured cells, their marks, today's column outlined."""
    rows, days = grid.ratios.shape
    image = axes.imshow(np.clip(grid.ratios, 0.0, RATIO_CLIP), cmap=RATIO_COLOURS, norm=norm, aspect="auto",
                        interpolation="nearest")
    _mark_cells(axes, grid)
    # Thin white lines between the cells, so neighbouring calm days stay apart.
    axes.set_xticks(np.arange(-0.5, days), minor=True)
    axes.set_yticks(np.arange(-0.5, rows), minor=True)
    axes.grid(which="minor", color="white", linewidth=0.6)
    axes.tick_params(which="minor", length=0)
    axes.tick_params(axis="x", length=0)
    axes.set_yticks(range(rows), grid.columns, fontsize=8)
    axes.add_patch(Rectangle((today - 0.5, -0.5), 1, rows, fill=False, edgecolor="black", linewidth=1.6, zorder=3))
    return image


def _calendar(first: date, last: date) -> list[date]:
    """Every day from ``first`` to ``last``, both included."""
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]


def _mark_cells(axes, grid: _Grid) -> None:
    """A cross on drifted cells, a ring on cells out of band but not drifted."""
    drifted_rows, drifted_days = np.nonzero(grid.drifted)
    axes.scatter(drifted_days, drifted_rows, marker="x", color="black", s=28, linewidths=1.3)
    only_rows, only_days = np.nonzero(grid.out_of_band & ~grid.drifted)
    axes.scatter(only_days, only_rows, marker="o", facecolors="none", edgecolors="black", s=22, linewidths=1.0)


def _label_days(axes, days: list[date], today: int) -> None:
    """Day labels under the heat map (every k-th when there are many), today's in bold."""
    step = max(1, int(np.ceil(len(days) / 16)))
    shown = sorted(set(range(len(days) - 1, -1, -step)))
    axes.set_xticks(shown, [f"{days[i]:%m-%d}" for i in shown], rotation=90 if len(days) > 8 else 0,
                    fontsize=8)
    for position, label in zip(shown, axes.get_xticklabels(), strict=True):
        if position == today:
            label.set_fontweight("bold")


# --- picture 2: the score's distribution ------------------------------------------------------------
def _score_distribution_figure(edges: np.ndarray, baseline_counts: np.ndarray, day_counts: np.ndarray, *,
                              threshold: float) -> Figure:
    """The day's scores against the baseline's over the fine bins, on a log score axis: left the
    density per unit of log10(score) (bin widths taken into account), right the share of scores at
    or above each cut point (the alert rate a threshold there would give). The threshold is the
    vertical line."""
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    density_axes, tail_axes = figure.subplots(1, 2)
    if len(edges) == 0 or not np.any(edges > 0):
        for axes in (density_axes, tail_axes):
            axes.text(0.5, 0.5, "no score bins to draw", ha="center", va="center", transform=axes.transAxes)
        return figure

    lower, upper = _log_bin_bounds(edges)
    for counts, label, colour in ((baseline_counts, "baseline", "#4d4d4d"), (day_counts, "today", "#1f77b4")):
        total = np.nansum(counts)
        if total <= 0:
            continue
        share = counts / total
        with np.errstate(divide="ignore", invalid="ignore"):
            density = np.where(upper > lower, share / (np.log10(upper) - np.log10(lower)), np.nan)
        style = {"color": colour, "linewidth": 1.8 if label == "today" else 1.4}
        density_axes.stairs(density, np.concatenate([lower[:1], upper]), label=f"{label} ({total:,.0f} rows)",
                            **style)
        tail_axes.plot(edges, share[::-1].cumsum()[::-1][1:], marker=".", markersize=3,
                       label=f"{label} ({total:,.0f} rows)", **style)

    density_axes.set(xscale="log", ylabel="density per unit of log10(score)", xlabel="fraud probability",
                     title="Score distribution: today against the baseline")
    density_axes.set_ylim(bottom=0)
    tail_axes.set_xscale("log")
    tail_axes.set_yscale("log", nonpositive="mask")
    tail_axes.set(xlabel="fraud probability", ylabel="share of scores ≥ x",
                  title="Upper tail: the alert rate a threshold at x would give")
    for axes in (density_axes, tail_axes):
        if threshold > 0:
            axes.axvline(threshold, color="#c62828", linestyle="--", linewidth=1.3, label=f"threshold {threshold:.3g}")
        axes.grid(alpha=0.3, which="major")
        axes.legend(fontsize=8, loc="best")
    return figure


def _log_bin_bounds(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of the fine bins for a log axis: the open first bin starts a decade
    below the smallest positive cut point, the open last bin ends at 1 (the score is a probability).
    Bins squeezed to no width by these bounds get NaN density (they are in the tail panel still)."""
    floor = edges[edges > 0].min() / 10
    top = max(1.0, edges.max())
    lower = np.clip(np.concatenate([[floor], edges]), floor, top)
    upper = np.clip(np.concatenate([edges, [top]]), floor, top)
    return lower, upper


# --- picture 3: realized performance and the alert rate over days -------------------------------------
def _performance_figure(drift: pd.DataFrame, performance: pd.DataFrame, *, day: date) -> Figure:
    """Top: realized AUC-PR per day with its bootstrap interval and the gate's lower limit.
    Bottom: the alert rate per 100,000 scored rows with the baseline ± limit band, and the
    labelled days' ``alerts_per_100k`` with its interval and limits. Frames as prepared by
    :func:`_prepared_drift` and :func:`_prepared_performance`."""
    figure = Figure(figsize=(10, 6.4), layout="constrained")
    auc_axes, alerts_axes = figure.subplots(2, 1, sharex=True)
    days = sorted(set(drift["txn_date"]) | set(performance["txn_date"]) | {day})

    _draw_auc_pr(auc_axes, performance)
    _draw_alert_rate(alerts_axes, drift, performance)

    positions = mdates.date2num(days)
    alerts_axes.set_xlim(positions.min() - 0.7, positions.max() + 0.7)
    # Whole days only: an automatic locator would tick hours when one day is shown.
    alerts_axes.xaxis.set_major_locator(mdates.DayLocator(interval=max(1, int(np.ceil(len(days) / 12)))))
    alerts_axes.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))
    for axes in (auc_axes, alerts_axes):
        axes.axvline(mdates.date2num(day), color="black", linewidth=0.8, alpha=0.4)
        axes.grid(alpha=0.3)
    return figure


def _draw_auc_pr(axes, performance: pd.DataFrame) -> None:
    """AUC-PR per labelled day with interval error bars, status-coloured points and limit_low."""
    axes.set(title="Realized AUC-PR (bootstrap interval)", ylabel="AUC-PR")
    rows = performance[performance["metric"] == "auc_pr"].sort_values("txn_date")
    if rows.empty:
        _say(axes, "no labels yet")
        return
    x = mdates.date2num(list(rows["txn_date"]))
    _interval_bars(axes, x, rows, colour="#1f77b4", label="AUC-PR")
    for status, colour in STATUS_COLOURS.items():
        chosen = (rows["status"] == status).to_numpy()
        if chosen.any():
            axes.scatter(x[chosen], rows["value"].to_numpy()[chosen], color=colour, s=30, zorder=3,
                         label=f"status {status}")
    _limit_line(axes, x, rows["limit_low"], label="limit (gate, low)")
    _legend_outside(axes)


def _draw_alert_rate(axes, drift: pd.DataFrame, performance: pd.DataFrame) -> None:
    """Alerts per 100,000 rows: every scored day's rate with the baseline ± limit band, and the
    labelled days' measured rate with interval and limits."""
    axes.set(title="Alert rate per 100,000 rows", ylabel="alerts per 100,000")
    rate = drift[(drift["column"] == SCORE_COLUMN) & (drift["metric"] == "alert_rate")]
    rate = rate.groupby("txn_date")[["value", "baseline", "limit"]].first().sort_index()
    labelled = performance[performance["metric"] == "alerts_per_100k"].sort_values("txn_date")
    if rate.empty and labelled.empty:
        _say(axes, "no alert-rate rows")
        return
    if not rate.empty:
        x = mdates.date2num(list(rate.index))
        low = ((rate["baseline"] - rate["limit"]).clip(lower=0) * PER_100K).to_numpy()
        high = ((rate["baseline"] + rate["limit"]) * PER_100K).to_numpy()
        # Steps half a day either side, so a single day still shows its band.
        band_x = np.column_stack([x - 0.5, x + 0.5]).ravel()
        axes.fill_between(band_x, np.repeat(low, 2), np.repeat(high, 2), color="#9e9e9e", alpha=0.25,
                          linewidth=0, label="baseline ± limit")
        axes.plot(band_x, np.repeat(rate["baseline"].to_numpy() * PER_100K, 2), color="#4d4d4d", linewidth=1,
                  linestyle=":", label="baseline")
        axes.plot(x, rate["value"].to_numpy() * PER_100K, marker="o", markersize=4, color="#1f77b4",
                  label="all scored rows, as scored")
    if not labelled.empty:
        x = mdates.date2num(list(labelled["txn_date"])) + 0.15  # beside the day's point, not on it
        _interval_bars(axes, x, labelled, colour="#6a3d9a", label="labelled rows at the real balance (interval)")
        _limit_line(axes, x, labelled["limit_low"], label="limit low")
        _limit_line(axes, x, labelled["limit_high"], label="limit high")
    axes.set_ylim(bottom=0)
    _legend_outside(axes)


def _interval_bars(axes, x: np.ndarray, rows: pd.DataFrame, *, colour: str, label: str) -> None:
    """Values with error bars from ``lower`` to ``upper`` (a missing bound draws no bar)."""
    value = rows["value"].to_numpy()
    below = np.clip(value - rows["lower"].to_numpy(), 0, None)
    above = np.clip(rows["upper"].to_numpy() - value, 0, None)
    # Points only: a line would suggest a value on the unlabelled days between them.
    axes.errorbar(x, value, yerr=np.nan_to_num(np.vstack([below, above])), fmt="o", markersize=4, capsize=3,
                  color=colour, linewidth=1.2, label=label)


def _limit_line(axes, x: np.ndarray, limits: pd.Series, *, label: str) -> None:
    """A dashed red line through the days' limits, if any day has one."""
    if limits.notna().any():
        axes.plot(x, limits.to_numpy(), color="#c62828", linestyle="--", linewidth=1.1, marker="_",
                  markersize=10, label=label)


def _legend_outside(axes) -> None:
    """The legend to the right of the panel, where it hides no point."""
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def _say(axes, message: str) -> None:
    axes.text(0.5, 0.5, message, ha="center", va="center", transform=axes.transAxes, fontsize=13, color="grey")
    axes.set_yticks([])


# --- the page ------------------------------------------------------------------------------------------
CAPTIONS = {
    "drift": "Drift per column and day: the colour is the worst value / limit over the column's metrics "
             "(1 = at the limit; blue below, red above). A cross marks a drifted column, a ring one out of "
             "band that day only. The score is the separate bottom row.",
    "score": "Today's scores against the baseline's, over the baseline's quantile bins. Left: density per "
             "unit of log10(score). Right: share of scores at or above each cut point. Dashed: the threshold.",
    "performance": "Top: realized AUC-PR on the labelled rows with its bootstrap interval. Bottom: alerts per "
                   "100,000 scored rows with the baseline ± limit band, and on labelled days the measured "
                   "rate with its interval.",
}

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 24px auto; max-width: 1200px; padding: 0 16px; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 4px; }
.facts { color: #555; margin-top: 0; }
.verdict { border-left: 10px solid; padding: 10px 16px; margin: 16px 0; background: #fafafa; }
.verdict .word { font-size: 2em; font-weight: 700; letter-spacing: 0.05em; }
.verdict ul { margin: 6px 0 0 0; }
figure { margin: 24px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 0.9em; margin-top: 4px; }
table { border-collapse: collapse; font-size: 0.9em; margin: 8px 0 16px 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f2f2f2; }
th.text, td.text { text-align: left; }
.status { font-weight: 700; }
"""


def _html_page(*, day: date, model_name: str, model_version: str, verdict: str, reasons: list[str],
               drift: pd.DataFrame, performance: pd.DataFrame, pictures: dict[str, bytes]) -> str:
    """The whole page as one string: every text escaped, every picture a data URI."""
    title = f"Monitoring: {model_name} version {model_version}, {day:%Y-%m-%d}"
    figures = "\n".join(
        f'<figure><img src="data:image/png;base64,{base64.b64encode(content).decode("ascii")}" '
        f'alt="{_text(name)} picture"><figcaption>{_text(CAPTIONS[name])}</figcaption></figure>'
        for name, content in pictures.items()
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_text(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{_text(title)}</h1>
<p class="facts">{_text(_facts(drift, performance, day))}</p>
{_verdict_block(verdict, reasons)}
<h2>Out of band or drifted today</h2>
{_drift_table(drift, day)}
<h2>Performance today</h2>
{_performance_table(performance, day)}
<h2>Pictures</h2>
{figures}
</body>
</html>
"""


OK_REASON = "no column out of band; realized figures within the gate's limits"


def _verdict_block(verdict: str, reasons: list[str]) -> str:
    colour = VERDICT_COLOURS[verdict]
    items = "".join(f"<li>{_text(reason)}</li>" for reason in reasons) or f"<li>{OK_REASON}</li>"
    return (f'<section class="verdict" id="verdict" style="border-color: {colour}">'
            f'Verdict: <span class="word" style="color: {colour}">{_text(verdict.upper())}</span>'
            f'<ul id="reasons">{items}</ul></section>')


def _facts(drift: pd.DataFrame, performance: pd.DataFrame, day: date) -> str:
    """One line: rows scored today, labelled rows and frauds (if any), days shown."""
    today = drift[drift["txn_date"] == day]
    scored = today["rows"].max() if not today.empty else np.nan
    parts = [f"{_number(scored)} rows scored"]
    labelled = performance[performance["txn_date"] == day]
    if labelled.empty:
        parts.append("no labels yet")
    else:
        parts.append(f"{_number(labelled['labelled_rows'].max())} labelled, "
                     f"{_number(labelled['frauds'].max())} frauds")
    days = sorted(set(drift["txn_date"]) | {day})
    parts.append(f"{len(days)} day(s) shown from {days[0]:%Y-%m-%d}")
    return "; ".join(parts)


def _drift_table(drift: pd.DataFrame, day: date) -> str:
    """Today's out-of-band metrics, and for a drifted column with none today its worst metric."""
    today = drift[(drift["txn_date"] == day) & drift["limit"].notna()]
    out_of_band = today[today["out_of_band"]]
    quiet_drifted = today[today["drifted"] & ~today["column"].isin(out_of_band["column"])]
    worst_of_quiet = quiet_drifted.sort_values("ratio", ascending=False).drop_duplicates("column")
    rows = pd.concat([out_of_band, worst_of_quiet]).sort_values(["drifted", "ratio"], ascending=[False, False])
    if rows.empty:
        return '<p id="drift-table">No column is out of band or drifted today.</p>'
    header = _header_row(["column", "metric", "value", "baseline", "limit", "value / limit", "state"],
                         text_columns={"column", "metric", "state"})
    body = "".join(
        "<tr>"
        f'<td class="text">{_text(row.column)}</td><td class="text">{_text(row.metric)}</td>'
        f"<td>{_number(row.value)}</td><td>{_number(row.baseline)}</td><td>{_number(row.limit)}</td>"
        f"<td>{_number(row.ratio)}</td><td class=\"text\">{_text(_state(row.drifted, row.out_of_band))}</td>"
        "</tr>"
        for row in rows.itertuples(index=False)
    )
    return f'<table id="drift-table">{header}{body}</table>'


def _header_row(names: list[str], *, text_columns: set[str]) -> str:
    """A table's header row, each name aligned like its column (text left, figures right)."""
    cells = "".join(f'<th class="text">{_text(name)}</th>' if name in text_columns else f"<th>{_text(name)}</th>"
                    for name in names)
    return f"<tr>{cells}</tr>"


def _state(drifted: bool, out_of_band: bool) -> str:
    return ", ".join(word for word, on in (("drifted", drifted), ("out of band", out_of_band)) if on)


def _performance_table(performance: pd.DataFrame, day: date) -> str:
    """Today's realized metrics with their interval, limits and status."""
    rows = performance[performance["txn_date"] == day]
    if rows.empty:
        return '<p id="performance-table">No labels yet for this day.</p>'
    header = _header_row(["metric", "value", "interval", "limit low", "limit high", "status"],
                         text_columns={"metric", "status"})
    body = "".join(
        "<tr>"
        f'<td class="text">{_text(row.metric)}</td><td>{_number(row.value)}</td>'
        f"<td>[{_number(row.lower)}, {_number(row.upper)}]</td>"
        f"<td>{_number(row.limit_low)}</td><td>{_number(row.limit_high)}</td>"
        f'<td class="text status" style="color: {STATUS_COLOURS.get(row.status, "#222")}">{_text(row.status)}</td>'
        "</tr>"
        for row in rows.itertuples(index=False)
    )
    return f'<table id="performance-table">{header}{body}</table>'


def _number(value: object) -> str:
    """A figure for a table: 4 significant digits, thousands separated, '-' when missing."""
    if value is None or pd.isna(value):
        return "-"
    value = float(value)
    if np.isinf(value):
        return "∞" if value > 0 else "-∞"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _text(value: object) -> str:
    return html.escape(str(value))


# --- files -----------------------------------------------------------------------------------------
def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _write_atomically(path: Path, content: bytes) -> None:
    """Write ``content`` to a temporary file in ``path``'s folder, then rename it onto ``path``."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(content)
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide the report from other readers
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
