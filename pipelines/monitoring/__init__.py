"""Monitoring: is each scored day still what its model version was fitted on, and how well did
the version do once the day's labels came in.

- :mod:`.profile` (numpy only): a column's profile (quantile bins and their counts), the drift
  metrics between two profiles, and the alarm band of each metric at a day's row count.
- :mod:`.spark_profiles`: the same profiles computed by Spark in one pass over a day.
- :mod:`.baseline`: the profile of the rows a version was fitted on, stored once per version.
- :mod:`.performance`: realized AUC-PR, recall, precision, alerts and amount caught, with
  bootstrap intervals, from a day's scores and labels.
- :mod:`.verdict`: out-of-band metrics, k-of-n days, and the day's ok / warn / alert.
- :mod:`.labels`: labels that arrive after ingest (chargebacks).
- :mod:`.report`: the per-day HTML report and its pictures.
- :mod:`.retrain`: what an alert starts (train -> promote) and its cool-down.
- :mod:`.tables`: the monitoring tables' schemas.
"""
