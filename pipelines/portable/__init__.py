"""Keeps the old path of :mod:`pipelines.model.portable.pyfunc` for good (no pyspark here either).

Every version registered before the stage packages names ``pipelines.portable.pyfunc`` as the
``loader_module`` of its ``python_function`` flavor (in its MLmodel file), which MLflow imports
by name whenever the version is loaded with ``mlflow.pyfunc.load_model`` or served. A bank's
registry keeps versions for years: never remove this package. New code imports
``pipelines.model.portable``.
"""
