"""The old path of :mod:`pipelines.model.portable.pyfunc`: the ``loader_module`` that versions
registered before the stage packages name (see :mod:`pipelines.portable`). Kept for good.

MLflow calls ``_load_pyfunc`` by name; a ``from ... import *`` would not carry a private name,
so each is named here.
"""

from pipelines.model.portable.pyfunc import PORTABLE_DIR, PortablePyfunc, _load_pyfunc, load_registered

__all__ = ["PORTABLE_DIR", "PortablePyfunc", "_load_pyfunc", "load_registered"]
