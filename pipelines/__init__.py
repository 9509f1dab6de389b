"""The fraud-scoring library, one sub-package per stage of a model's life.

In the order they may import each other (a stage imports ``core`` and the stages before it,
never one after it; tests/test_layout.py reads the imports and holds this):

- :mod:`pipelines.core`: settings, errors, the command line, the clock, the Spark session;
- :mod:`pipelines.data`: the input's schema, CSV -> transactions, Delta tables, the catalog,
  generated data, read-only SQL;
- :mod:`pipelines.model`: the Spark ML pipeline's stages, metrics and thresholds, the model
  reference, the registry, registering a version, and ``portable/`` (the JVM-free scorer);
- :mod:`pipelines.training`: the search over candidates and its MLflow run;
- :mod:`pipelines.lifecycle`: the promotion gate and its record;
- :mod:`pipelines.scoring`: nightly scoring, its checks, catch-up of stale days;
- :mod:`pipelines.monitoring`: drift, realized performance, verdicts, retraining;
- :mod:`pipelines.serving`: the REST service (no pyspark).

``pipelines.portable`` is not a stage: it keeps the old path ``pipelines.portable.pyfunc`` of
``pipelines.model.portable.pyfunc``, because registered versions name it (see its docstring).
"""
