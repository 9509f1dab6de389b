"""The model's building blocks, used by training, the gate, scoring and monitoring alike.

- :mod:`.stages`: the Spark ML pipelines a fraud model can be (candidates, the ensemble's
  ``MeanProbability``);
- :mod:`.evaluation`: metrics on scores and labels, and the threshold a policy picks;
- :mod:`.card_precision`: Card Precision@k, the daily share of compromised cards among the
  k cards alerted (pandas only);
- :mod:`.ref`: which registered version scores (``ModelRef``);
- :mod:`.registry`: the MLflow registry: resolving versions, aliases, tags, loading;
- :mod:`.release`: logging a version with its portable form, if it passes the release rule;
- :mod:`.portable`: the fitted pipeline without a JVM (no pyspark anywhere on its import path,
  this file included).

This package was the module ``pipelines/model.py``. Saved Spark pipelines name their Python
stages by module path, and every registered ensemble names ``pipelines.model.MeanProbability``:
so the old module's names stay reachable here, for good, loaded from :mod:`.stages` (which
needs pyspark) only when one is asked for. A bank keeps old versions for years.
"""

from __future__ import annotations

import importlib
from typing import Any

# The public names of the old module pipelines/model.py, now in pipelines.model.stages.
_OLD_MODULE_NAMES = frozenset({
    "CANDIDATES", "Candidate", "ENSEMBLE", "MeanProbability", "build_pipeline", "check_candidate",
    "check_ensemble_members", "compose_ensemble", "fraud_probability", "pipeline_members",
})


def __getattr__(name: str) -> Any:
    if name in _OLD_MODULE_NAMES:
        return getattr(importlib.import_module("pipelines.model.stages"), name)
    raise AttributeError(f"module 'pipelines.model' has no attribute {name!r}")
