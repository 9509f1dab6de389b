"""Profiles of a column, the drift metrics between two of them, and each metric's alarm band.

Numpy only: Spark computes the profiles (:mod:`pipelines.monitoring.spark_profiles`), this
module compares them.

A **profile** counts a column's values in fixed bins cut at the baseline's quantiles (the
*fine* bins, ``[monitor] bins``), with its row count, nulls, sum, sum of squares, minimum and
maximum. The fine bins serve the KS statistic and the Wasserstein distance; grouped into
``psi_bins`` bins of about equal baseline mass (*coarse* bins) they serve PSI and the
Jensen-Shannon distance, whose values depend on the number of bins.

A fixed rule (PSI > 0.25, p < 0.05) flags everything at a million rows and nothing at a
thousand: with more rows a sample's histogram moves less by chance, so the same change is
more surely real, and every statistic's null distribution moves with the row count. So each
metric's **band** is measured, not assumed: draw a sample of the baseline's size and one of
the day's size from the baseline's own histogram, compute the metric between them, repeat
``band_samples`` times, and take the ``band_quantile`` of the results. That is how far the
metric goes by chance alone at these two sizes. The band is then widened to the metric's
**minimum effect** (``[monitor.min_effect]``): a change too small to matter is never an alarm,
however many rows show it.

Bins (``edges`` are the inner cut points, ascending, distinct)::

    bin 0: (-inf, edges[0])   bin i: [edges[i-1], edges[i])   bin m-1: [edges[-1], inf)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

# Empty bins would make PSI and the divergences infinite; every share is floored at this.
SHARE_FLOOR = 1e-4


@dataclass(frozen=True)
class Profile:
    """What one column looks like: counts in the baseline's fine bins and its moments."""

    edges: np.ndarray
    counts: np.ndarray  # len(edges) + 1, over the non-null values
    rows: int  # every row, nulls included
    nulls: int  # null or NaN
    total: float  # sum of the non-null values
    total_sq: float  # sum of their squares
    minimum: float
    maximum: float
    out_of_range: int = 0  # values below or above the baseline's minimum and maximum

    @property
    def values(self) -> int:
        return self.rows - self.nulls

    @property
    def mean(self) -> float:
        return self.total / self.values if self.values else float("nan")

    @property
    def std(self) -> float:
        if self.values < 2:
            return 0.0
        variance = (self.total_sq - self.total * self.total / self.values) / (self.values - 1)
        return float(np.sqrt(max(variance, 0.0)))

    @property
    def null_share(self) -> float:
        return self.nulls / self.rows if self.rows else 0.0

    @property
    def out_of_range_share(self) -> float:
        return self.out_of_range / self.values if self.values else 0.0

    def merged(self, other: Profile) -> Profile:
        """Two partial profiles of the same column over the same bins, as one."""
        return replace(
            self,
            counts=self.counts + other.counts,
            rows=self.rows + other.rows,
            nulls=self.nulls + other.nulls,
            total=self.total + other.total,
            total_sq=self.total_sq + other.total_sq,
            minimum=min(self.minimum, other.minimum),
            maximum=max(self.maximum, other.maximum),
            out_of_range=self.out_of_range + other.out_of_range,
        )


def cut_points(quantiles: np.ndarray | list[float]) -> np.ndarray:
    """The fine bins' inner cut points from a column's quantiles: finite, distinct, ascending.

    A column with many equal values (an amount of 0) has equal quantiles: they become one cut,
    so such a column has fewer bins, each holding what is really there.
    """
    values = np.asarray([q for q in quantiles if q is not None], dtype=float)
    return np.unique(values[np.isfinite(values)])


def profile_of(values: np.ndarray, edges: np.ndarray, *, valid_range: tuple[float, float] | None = None) -> Profile:
    """The profile of ``values`` (NaN = null) over the bins of ``edges``.

    :param valid_range: the baseline's (minimum, maximum): values outside count as out of range.

    Example::

        profile_of(np.array([0.1, 2.0, np.nan]), np.array([1.0]))   # counts [1, 1], nulls 1
    """
    values = np.asarray(values, dtype=float)
    present = values[~np.isnan(values)]
    counts = np.bincount(np.searchsorted(edges, present, side="right"), minlength=len(edges) + 1)
    out_of_range = 0
    if valid_range is not None and present.size:
        out_of_range = int(np.count_nonzero((present < valid_range[0]) | (present > valid_range[1])))
    return Profile(
        edges=np.asarray(edges, dtype=float),
        counts=counts.astype(float),
        rows=int(values.size),
        nulls=int(values.size - present.size),
        total=float(present.sum()),
        total_sq=float(np.square(present).sum()),
        minimum=float(present.min()) if present.size else float("inf"),
        maximum=float(present.max()) if present.size else float("-inf"),
        out_of_range=out_of_range,
    )


def coarse_groups(baseline_counts: np.ndarray, psi_bins: int) -> np.ndarray:
    """For each fine bin, its coarse bin: consecutive fine bins grouped to about ``1/psi_bins``
    of the baseline's mass each (a fine bin goes where the middle of its mass falls)."""
    counts = np.asarray(baseline_counts, dtype=float)
    total = counts.sum()
    if total <= 0:
        return np.zeros(len(counts), dtype=int)
    middle = (np.cumsum(counts) - counts / 2) / total
    groups = np.minimum((middle * psi_bins).astype(int), psi_bins - 1)
    return np.unique(groups, return_inverse=True)[1].astype(int)


# --- The metrics ----------------------------------------------------------------------------------
# Each compares counts ``a`` (the baseline) with counts ``b`` (a day): 1-d arrays, or 2-d with
# one draw per row (row i of ``a`` against row i of ``b``; a 1-d side is used for every row). So
# the same code measures a day and the draws behind its band.


def _shares(counts: np.ndarray) -> np.ndarray:
    counts = np.atleast_2d(np.asarray(counts, dtype=float))
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def _grouped(shares: np.ndarray, groups: np.ndarray) -> np.ndarray:
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    return np.add.reduceat(shares, starts, axis=1)


def _cdf_gaps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|F_b - F_a| at each inner cut point."""
    return np.abs(np.cumsum(_shares(b), axis=1) - np.cumsum(_shares(a), axis=1))[:, :-1]


def psi(a: np.ndarray, b: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Population stability index over the coarse bins: sum of (q - p) * ln(q / p)."""
    p = np.maximum(_grouped(_shares(a), groups), SHARE_FLOOR)
    q = np.maximum(_grouped(_shares(b), groups), SHARE_FLOOR)
    return np.sum((q - p) * np.log(q / p), axis=1)


def js_distance(a: np.ndarray, b: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Jensen-Shannon distance (base 2, so within [0, 1]) over the coarse bins."""
    p, q = np.broadcast_arrays(_grouped(_shares(a), groups), _grouped(_shares(b), groups))
    m = (p + q) / 2

    def divergence(x: np.ndarray) -> np.ndarray:
        ratio = np.divide(x, m, out=np.ones_like(x), where=(x > 0) & (m > 0))
        return np.sum(x * np.log2(ratio), axis=1)

    return np.sqrt(np.maximum((divergence(p) + divergence(q)) / 2, 0.0))


def ks(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Kolmogorov-Smirnov statistic: the largest gap between the two distribution functions,
    read at the fine bins' cut points."""
    return np.max(_cdf_gaps(a, b), axis=1, initial=0.0)


def wasserstein_std(a: np.ndarray, b: np.ndarray, edges: np.ndarray, std: float) -> np.ndarray:
    """Wasserstein-1 distance in units of the baseline's standard deviation: the area between
    the two distribution functions over the cut points' range (trapezoids), divided by ``std``.
    Values beyond the outer cut points count through the out-of-range share instead."""
    gaps = _cdf_gaps(a, b)
    if len(edges) < 2 or std <= 0:
        return np.zeros(gaps.shape[0])
    return np.sum((gaps[:, :-1] + gaps[:, 1:]) / 2 * np.diff(edges), axis=1) / std


def distribution_metrics(baseline: Profile, day_counts: np.ndarray, groups: np.ndarray,
                         *, against: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """PSI, Jensen-Shannon distance, KS and normalised Wasserstein of ``day_counts`` against the
    baseline's counts (or against ``against``: draws of the same bins)."""
    a = baseline.counts if against is None else against
    return {
        "psi": psi(a, day_counts, groups),
        "js_distance": js_distance(a, day_counts, groups),
        "wasserstein_std": wasserstein_std(a, day_counts, baseline.edges, baseline.std),
        "ks": ks(a, day_counts),
    }


# --- Bands ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BandSettings:
    samples: int
    quantile: float
    seed: int


def distribution_bands(
    baseline: Profile, groups: np.ndarray, day_values: int, settings: BandSettings
) -> dict[str, float]:
    """Each distribution metric's band at ``day_values`` rows: its ``quantile`` between a
    baseline-sized and a day-sized sample, both drawn from the baseline's histogram."""
    if day_values <= 0 or baseline.values <= 0:
        return {name: 0.0 for name in ("psi", "js_distance", "wasserstein_std", "ks")}
    rng = np.random.default_rng(settings.seed)
    shares = baseline.counts / baseline.counts.sum()
    redrawn = rng.multinomial(baseline.values, shares, size=settings.samples).astype(float)
    days = rng.multinomial(day_values, shares, size=settings.samples).astype(float)
    metrics = distribution_metrics(baseline, days, groups, against=redrawn)
    return {name: float(np.quantile(values, settings.quantile)) for name, values in metrics.items()}


def share_band(share: float, baseline_rows: int, day_rows: int, settings: BandSettings) -> float:
    """The ``quantile`` of a share's distance from the baseline's between a baseline-sized and a
    day-sized sample (binomial draws at ``share``): the band of a null, out-of-range or alert
    share at these sizes."""
    if day_rows <= 0:
        return 0.0
    rng = np.random.default_rng(settings.seed)
    redrawn = rng.binomial(max(baseline_rows, 1), share, size=settings.samples) / max(baseline_rows, 1)
    days = rng.binomial(day_rows, share, size=settings.samples) / day_rows
    return float(np.quantile(np.abs(days - redrawn), settings.quantile))


def out_of_range_rate(baseline_values: int) -> float:
    """The chance that a new value from the baseline's own distribution falls outside the range
    of ``baseline_values`` values drawn from it: 2 / (n + 1), whatever the distribution."""
    return 2.0 / (baseline_values + 1)
