"""``fraud-serve``: the online scoring service, from ``conf/<env>.toml``, under uvicorn.

    fraud-serve --env local                           # 127.0.0.1:8000 ([serve] in conf/local.toml)
    fraud-serve --env cluster --host 0.0.0.0          # in a container
    fraud-serve --env local --create-token-if-missing # what `make serve` runs

Exit 2, before listening, when the settings are bad or no bearer token is configured.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

import uvicorn

from pipelines.core.config import load_serving_settings
from pipelines.core.errors import FraudScoringError
from pipelines.serving.app import MAX_HEAD_BYTES, create_app
from pipelines.serving.tokens import create_token_file, load_tokens

log = logging.getLogger("fraud_scoring.serve")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fraud-serve", description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="local", help="config in conf/ or a path to a .toml file (default: local)")
    parser.add_argument("--host", help="interface to listen on (default: [serve] host)")
    parser.add_argument("--port", type=int, help="port to listen on (default: [serve] port)")
    parser.add_argument("--create-token-if-missing", action="store_true",
                        help="write a random token to [serve] token_file first, if that file does not exist")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_serving_settings(args.env)
        serve = settings.serve
        if args.create_token_if_missing:
            if not serve.token_file:
                raise FraudScoringError(f"--create-token-if-missing: {args.env} sets no [serve] token_file")
            if create_token_file(serve.token_file):
                print(f"fraud-serve: wrote a new bearer token to {serve.token_file} (readable only by you); "
                      f"send it as 'Authorization: Bearer <token>'", file=sys.stderr)
        tokens, source, token_file = load_tokens(serve.token_file)
    except FraudScoringError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    host, port = args.host or serve.host, args.port or serve.port
    log.info("bearer token(s) from %s; model %s@%s from %s; listening on http://%s:%d", source,
             settings.mlflow.model_name, settings.mlflow.champion_alias, settings.mlflow.tracking_uri, host, port)
    app = create_app(settings, tokens, token_file=token_file)
    server = uvicorn.Server(server_config(app, host, port, keep_alive_seconds=serve.keep_alive_seconds))
    server.run()
    # The port was taken or the app failed to start: uvicorn.run's exit status for that.
    return 0 if server.started else 3


def server_config(app: Any, host: str, port: int, *, keep_alive_seconds: float) -> uvicorn.Config:
    """How uvicorn runs the service (``fraud-serve`` and the tests alike).

    HTTP/1.1 by h11, named rather than left to "auto": with uvicorn[standard] installed, "auto"
    picks httptools, which keeps reading a request's head however large it grows (a client
    could send hundreds of kilobytes of headers). h11 refuses a head still incomplete past
    ``MAX_HEAD_BYTES`` with a 400 and closes; one that arrived whole is held to the same limit
    by the app (431).
    """
    return uvicorn.Config(app, host=host, port=port, http="h11", h11_max_incomplete_event_size=MAX_HEAD_BYTES,
                          access_log=False, log_level="info", timeout_graceful_shutdown=20,
                          timeout_keep_alive=keep_alive_seconds)


if __name__ == "__main__":
    sys.exit(main())
