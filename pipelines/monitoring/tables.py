"""The monitoring tables: one Delta table each, queryable by name through the ``sql`` job.

Every row names the model version it is about; a rerun of a day replaces that day's rows of
that version (one row per column and metric), so the tables never hold two answers to one
question.
"""

from __future__ import annotations

# The profile of the rows a version was fitted on: one row per feature and one for the score
# (``column = 'fraud_probability'``, ``kind = 'score'``). ``edges`` are the fine bins' inner
# cut points: bin 0 is (-inf, edges[0]), bin i is [edges[i-1], edges[i]), the last is
# [edges[-1], inf); ``counts`` has one more entry than ``edges``. ``psi_groups`` maps each fine
# bin to its coarse bin (PSI, Jensen-Shannon). ``min``/``max`` bound the baseline's values:
# anything outside is out of range. ``day_spread``: per metric, the largest distance of one fitted
# day from the other fitted days (the training data's own day-to-day variation).
BASELINE_SCHEMA = (
    "model_name string, model_version string, column string, kind string, "
    "source_table_path string, source_table_version long, fitted_days string, rows long, "
    "null_share double, mean double, std double, min double, max double, "
    "edges array<double>, counts array<double>, psi_groups array<int>, "
    "alert_rate double, day_spread map<string, double>, created_at timestamp"
)

# One row per (day, version, column, metric). ``kind``: 'input' (a feature) or 'score'
# (``fraud_probability``). ``baseline``: the metric's value on the baseline where it has one
# (null share, alert rate...). ``band``: the larger of the metric's ``band_quantile`` between
# baseline-sized and day-sized samples of the baseline itself and the fitted days' own spread
# (``day_spread``); ``limit``: max(band, minimum effect), null for
# a figure that is reported but never alarms (mean, expected frauds). ``out_of_band``: value
# (for the alert rate: its distance from the baseline) above ``limit`` today; ``drifted``: the
# column was out of band on ``drift_days`` of the last ``window_days`` monitored days.
DRIFT_SCHEMA = (
    "txn_date date, model_name string, model_version string, column string, kind string, "
    "metric string, value double, baseline double, band double, limit double, "
    "out_of_band boolean, drifted boolean, rows long, scored_at timestamp, computed_at timestamp"
)

# One row per (day, version, metric) once the day has labels. ``lower``/``upper``: the bootstrap
# interval at [monitor] confidence. ``limit_low``/``limit_high``: the promotion gate's limits
# (null where the metric has none). ``status``: 'alert' when the whole interval is outside the
# limits, 'warn' when the value is but the interval is not, 'ok' otherwise.
# ``labels_fingerprint`` identifies the labels measured: the row is recomputed (and
# ``computed_at`` moves) only when it changes.
PERFORMANCE_SCHEMA = (
    "txn_date date, model_name string, model_version string, metric string, value double, "
    "lower double, upper double, limit_low double, limit_high double, status string, "
    "labelled_rows long, frauds long, labels_fingerprint string, computed_at timestamp"
)

# One row per (day, version): the verdict and why.
VERDICT_SCHEMA = (
    "txn_date date, model_name string, model_version string, verdict string, "
    "reasons array<string>, drifted_columns array<string>, out_of_band_columns array<string>, "
    "rows long, labelled_rows long, scored_at timestamp, report string, computed_at timestamp"
)

OK, WARN, ALERT = "ok", "warn", "alert"
SEVERITY = {OK: 0, WARN: 1, ALERT: 2}
# The monitor job's exit status when a day's verdict is alert: not 1 (a failure) or 2 (bad
# input), and not 3-5 (the other jobs' documented codes), so an orchestrator can branch on it.
ALERT_EXIT_CODE = 6
SCORE_COLUMN = "fraud_probability"
