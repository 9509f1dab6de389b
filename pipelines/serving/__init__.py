"""Online scoring: the champion's portable form behind an authenticated REST service.

- :mod:`~pipelines.serving.tokens`: where bearer tokens come from, and checking one;
- :mod:`~pipelines.serving.models`: the model being served, and the watcher that swaps in a
  new version when the registry alias moves;
- :mod:`~pipelines.serving.metrics`: what ``/metrics`` exposes;
- :mod:`~pipelines.serving.app`: the ASGI app (Starlette): routes, validation, authentication;
- :mod:`~pipelines.serving.cli`: ``fraud-serve``, which reads ``conf/<env>.toml`` and runs it
  under uvicorn.

Nothing here imports pyspark or needs Java.
"""
