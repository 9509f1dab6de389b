"""History features of the payments profile, computed point-in-time (``./spark-submit.sh features``).

- :mod:`.definitions`: what ``[features]`` declares, as column names and one id per set of
  definitions; no Spark, so the service can read it.
- :mod:`.history`: the Spark transform from ``transactions`` rows to their features.
- :mod:`.days`: which days to compute, the history each needs, gaps, and stale days.

docs/features.md says what each feature is and when a label counts.
"""
