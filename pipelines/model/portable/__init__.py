"""The fitted pipeline without a JVM: what online scoring (and any Python process) loads.

- :mod:`~pipelines.model.portable.stages`: each Spark ML stage rebuilt from its saved data;
- :mod:`~pipelines.model.portable.trees`: tree ensembles as flat arrays, walked by compiled code;
- :mod:`~pipelines.model.portable.decision`: the version's threshold and real-balance correction;
- :mod:`~pipelines.model.portable.model`: the whole pipeline, saved as files and checked for parity;
- :mod:`~pipelines.model.portable.pyfunc`: the MLflow ``python_function`` flavor that serves it.

Nothing here imports pyspark: the serving image has no Spark and no Java.
"""
