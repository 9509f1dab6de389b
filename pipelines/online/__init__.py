"""Online history features: the payments profile's features computed at request time, from a
Redis that the nightly batch fills and the service keeps current (docs/online-features.md).

- :mod:`.windows`: a transaction's window bounds and its features from the window sums, the
  same arithmetic as :mod:`pipelines.features.history` (no Spark, no Redis);
- :mod:`.store`: the store's layout, its atomic steps (Lua scripts, one key each), and the
  connection (URL and password from the environment, a secret file or a Cloud Foundry binding);
- :mod:`.publish`: the nightly state from the Delta tables, merged into the store (Spark);
- :mod:`.echo`: the sample of answered features the nightly skew check compares with the batch.

Nothing but :mod:`.publish` imports pyspark: the service imports the rest.
"""
