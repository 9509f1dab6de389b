"""The ASGI app: Starlette routes, hand-written validation, bearer authentication, metrics.

Starlette rather than FastAPI: a request is validated by hand (each refusal names the
transaction and the field, and NaN, infinities, booleans and strings are refused where
pydantic's lax mode would coerce some), no OpenAPI page may be served without a token, and
scoring one transaction is a fraction of a millisecond, so every layer a request passes
through shows in the latency. FastAPI's additions would go unused; Starlette is its core.

Routes:

- ``GET /healthz``: the process answers (no token);
- ``GET /readyz``: 200 once a model is loaded, else 503 (no token, so the status only);
- ``GET /metrics``: Prometheus text format (token);
- ``GET /v1/model``: the version serving, its threshold, its features and a made-up example
  transaction (token);
- ``POST /v1/score``: one transaction (a JSON object) or a batch (an array of them) (token);
- ``GET /``: the analysts' page, static HTML; everything it shows comes from the two calls
  above, made with the token the person types in.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from pipelines.core.config import ServingSettings
from pipelines.core.errors import ConfigError
from pipelines.core.secrets import card_key_secret
from pipelines.features.definitions import feature_columns, feature_set_id
from pipelines.online.echo import EchoLog
from pipelines.online.lookup import OnlineFeatures, RawTransaction, StoreRefusal
from pipelines.online.store import store_address
from pipelines.serving.metrics import ServiceMetrics
from pipelines.serving.models import LoadedModel, ModelHolder, ModelWatcher
from pipelines.serving.raw import check_feature_set_field, is_raw, parse_raw
from pipelines.serving.tokens import TokenChecker

log = logging.getLogger(__name__)

PAGE = Path(__file__).with_name("page.html")
# Fields a transaction may carry besides the model's features: the data set's `Time` (seconds
# from its start; the model does not read it), the caller's own id, echoed back, and the
# feature set its features were computed with (payments: refused with 409 unless the model's).
OPTIONAL_FIELDS = ("Time", "transaction_id", "feature_set")
# The largest magnitude a feature may have: what float32 holds (XGBoost reads float32).
MAX_ABS_VALUE = float(np.finfo(np.float32).max)
_MAX_DOUBLE = float(np.finfo(np.float64).max)
# Bodies larger than this (a transaction is ~700 bytes) are parsed and scored on a worker
# thread, so the event loop keeps answering single transactions meanwhile.
INLINE_BYTES = 16_384
# A refusal lists at most this many problems (and says how many there were).
MAX_PROBLEMS = 20
# The largest request head (request line and headers, each header counted as `name: value`
# and its line end) accepted: 16 KiB, as nginx's large buffers, IIS and h11 by default; a
# caller's headers are a token and a few short fields. Larger is refused with 431.
MAX_HEAD_BYTES = 16 * 1024
_NUMBER_TYPES = (int, float)


class RequestRefused(Exception):
    def __init__(self, status: int, kind: str, detail: Any) -> None:
        super().__init__(str(detail))
        self.status, self.kind, self.detail = status, kind, detail


def _problem(loc: list[Any], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": ["body", *loc], "msg": msg, "type": kind}


class _Duplicated(dict):
    """A parsed JSON object that named some field more than once (``names``: those fields)."""

    names: list[str]


def _duplicated_fields(payload: Any) -> list[dict[str, Any]]:
    """A problem per field named more than once in any object of ``payload``, with its path.

    Walked with a stack, not recursion: the parser accepted the nesting, so must this.
    """
    problems: list[dict[str, Any]] = []
    stack: list[tuple[Any, list[Any]]] = [(payload, [])]
    while stack and len(problems) <= MAX_PROBLEMS:
        value, loc = stack.pop()
        if isinstance(value, dict):
            if isinstance(value, _Duplicated):
                problems += [_problem([*loc, name], f"the field {json.dumps(name)[:80]} appears more than once in "
                                                    f"this object; each field must appear once", "duplicate_field")
                             for name in value.names]
            stack += [(item, [*loc, key]) for key, item in reversed(value.items())]
        elif isinstance(value, list):
            stack += [(item, [*loc, index]) for index, item in reversed(list(enumerate(value)))]
    return problems


def load_rows(body: bytes, max_batch: int) -> tuple[list[Any], bool]:
    """(the transactions of a body, whether it was one object).

    An object that names a field twice, at any depth, is refused: Python's json keeps the last
    value, and a proxy, a log or the caller's own checks may read the first.

    :raises RequestRefused: 422 naming every problem found (up to :data:`MAX_PROBLEMS`).
    """
    duplicated = False

    def make_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal duplicated
        made = dict(pairs)
        if len(made) == len(pairs):
            return made
        duplicated = True
        marked, seen = _Duplicated(made), set()
        marked.names = []
        for key, _ in pairs:
            if key in seen and key not in marked.names:
                marked.names.append(key)
            seen.add(key)
        return marked

    try:
        # NaN and Infinity parse (Python's json reads them) and are refused below, by field.
        payload = json.loads(body, object_pairs_hook=make_object)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise RequestRefused(422, "invalid", [_problem([], f"the body is not valid JSON: {exc}",
                                                       "json_invalid")]) from None
    if duplicated:
        # Before any other check: which value the caller meant is unknown, so none is judged.
        raise RequestRefused(422, "invalid", _duplicated_fields(payload)[:MAX_PROBLEMS + 1])
    single = isinstance(payload, dict)
    rows = [payload] if single else payload
    if not isinstance(rows, list):
        raise RequestRefused(422, "invalid", [_problem([], "expected a transaction (an object) or a batch (an array "
                                                           "of objects)", "type_error")])
    if not rows:
        raise RequestRefused(422, "invalid", [_problem([], "the batch is empty", "too_short")])
    if len(rows) > max_batch:
        raise RequestRefused(422, "too_large", [_problem(
            [], f"a batch holds at most {max_batch} transactions, got {len(rows)}", "too_long")])
    return rows, single


def parse_transactions(body: bytes | list[Any], feature_cols: list[str], max_batch: int, *,
                       feature_set: str | None = None, single: bool = False) -> tuple[np.ndarray, list[Any], bool]:
    """(features as rows x feature_cols, each transaction's id or None, whether it was one object)
    of a body (or of the rows :func:`load_rows` read from it, with ``single``).

    :raises RequestRefused: 422 naming every problem found (up to :data:`MAX_PROBLEMS`).
    """
    rows, single = load_rows(body, max_batch) if isinstance(body, bytes) else (body, single)
    expected = set(feature_cols)
    allowed = expected | set(OPTIONAL_FIELDS)
    features = np.empty((len(rows), len(feature_cols)))
    ids: list[Any] = []
    problems: list[dict[str, Any]] = []
    other_sets: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        if len(problems) > MAX_PROBLEMS:
            problems.append(_problem([], f"... and more problems in transactions {index} to {len(rows) - 1}",
                                     "truncated"))
            break
        where = [] if single else [index]
        if not isinstance(row, dict):
            problems.append(_problem(where, "a transaction is an object of the feature names", "type_error"))
            ids.append(None)
            continue
        keys = row.keys()
        if len(keys) > len(allowed):
            problems.append(_problem(where, f"a transaction has at most {len(allowed)} fields, got {len(keys)}",
                                     "too_long"))
            ids.append(None)
            continue
        for name in sorted(expected - keys):
            problems.append(_problem([*where, name], "field required", "missing"))
        for name in sorted(keys - allowed):
            problems.append(_problem([*where, name], f"unknown field; a transaction has {feature_cols} "
                                                     f"(and optionally {list(OPTIONAL_FIELDS)})", "extra_forbidden"))
        for column, name in enumerate(feature_cols):
            value = row.get(name)
            if value is None and name not in keys:
                continue
            if type(value) not in _NUMBER_TYPES:  # bool is an int subclass: refused here too
                problems.append(_problem([*where, name], f"must be a number, got {json.dumps(value)[:40]}",
                                         "float_type"))
            elif not -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE:  # NaN, infinities, and ints of any size
                problems.append(_problem([*where, name], f"must be a finite number within ±{MAX_ABS_VALUE:.4g}, "
                                                         f"got {value!r}", "finite_number"))
            else:
                features[index, column] = value
        time_value = row.get("Time")
        if "Time" in keys and (type(time_value) not in _NUMBER_TYPES or not -_MAX_DOUBLE <= time_value <= _MAX_DOUBLE):
            problems.append(_problem([*where, "Time"], "must be a finite number", "float_type"))
        transaction_id = row.get("transaction_id")
        if transaction_id is not None and type(transaction_id) not in (str, int):
            problems.append(_problem([*where, "transaction_id"], "must be a string or an integer", "type_error"))
        ids.append(transaction_id)
        check_feature_set_field(row, where, feature_set, problems, other_sets, _problem)
    if problems:
        raise RequestRefused(422, "invalid", problems[:MAX_PROBLEMS + 1])
    if other_sets:
        raise RequestRefused(409, "feature_set_mismatch", other_sets[:MAX_PROBLEMS + 1])
    return features, ids, single


def score_rows(model: LoadedModel, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fraud_probability at the real balance, is_fraud) per row, with ``model`` only."""
    sample = model.portable.sample_probability(features)
    return model.portable.decision.apply(sample)


@dataclass
class Payments:
    """What raw payments need: the store, the card key's secret, the profile's zone, the
    feature set the service computes, the echo log."""

    online: OnlineFeatures
    secret: bytes | None
    time_zone: str
    feature_set: str
    echo: EchoLog | None
    # The answer's features, in order: the amount, then the feature set's columns.
    columns: tuple[str, ...] = ()


def payments_from(settings: ServingSettings) -> Payments | None:
    """The raw-payments side of the service, when the environment is the payments profile and
    an online store is configured (None otherwise: then only features in the request).

    :raises ConfigError: the store's password or the definitions are unusable.
    """
    if settings.profile.kind != "payments":
        return None
    address = store_address(settings.online)
    if address is None:
        log.warning("no online store configured ($FRAUD_ONLINE_URL, [online] url): raw payments are refused; "
                    "transactions must carry their features")
        return None
    try:
        secret = card_key_secret(settings.profile.card_key_secret_file)
    except ConfigError as exc:
        log.warning("no card key secret (%s): payments must carry `card_key`, not `card`", exc)
        secret = None
    zone = settings.profile.time_zone
    log.info("online features from %s", address.shown())
    echo = EchoLog(settings.online.echo_dir, settings.online.echo_sample) if settings.online.echo_dir else None
    return Payments(OnlineFeatures(address, settings.online, settings.features, time_zone=zone), secret, zone,
                    feature_set_id(settings.features, time_zone=zone), echo,
                    ("amount", *feature_columns(settings.features)))


def create_app(settings: ServingSettings, tokens: str, *, token_file: str | None = None,
               holder: ModelHolder | None = None, watcher: ModelWatcher | None = None,
               metrics: ServiceMetrics | None = None, payments: Payments | None = None) -> Starlette:
    """The service, serving what ``watcher`` loads into ``holder`` (both made from ``settings``
    when not given; the watcher starts and stops with the app). ``token_file``, when the
    tokens came from one, is read again for rotations. ``payments``: raw payments' online
    features (made from ``settings`` when not given)."""
    metrics = metrics or ServiceMetrics()
    payments = payments if payments is not None else payments_from(settings)
    holder = holder or ModelHolder()
    watcher = watcher if watcher is not None else ModelWatcher(settings.mlflow, holder, metrics,
                                                               poll_seconds=settings.serve.poll_seconds)
    checker = TokenChecker(tokens, path=token_file)
    serve = settings.serve
    page = PAGE.read_text()

    def authorized(request: Request) -> None:
        if not checker.allows(request.headers.get("authorization")):
            raise RequestRefused(401, "unauthorized", "missing or invalid bearer token")

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def readyz(request: Request) -> Response:
        # No token here: the status only (the version and any failure are in /v1/model, /metrics, the log).
        if holder.current is None:
            return JSONResponse({"ready": False}, status_code=503)
        if payments is not None and holder.current.feature_set is not None and not await payments.online.ping():
            metrics.errors.labels(kind="store_unavailable").inc()
            return JSONResponse({"ready": False}, status_code=503)
        return JSONResponse({"ready": True})

    async def metrics_page(request: Request) -> Response:
        authorized(request)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def serving(request: Request) -> LoadedModel:
        model = holder.current  # read once: this request is answered by this version only
        if model is None:
            raise RequestRefused(503, "not_ready", f"no model is loaded yet ({holder.waiting_reason})")
        return model

    async def model_page(request: Request) -> Response:
        authorized(request)
        model = serving(request)
        portable = model.portable
        example = {}
        if portable.parity is not None:
            # A made-up transaction, not a customer's: each feature's median over the parity rows.
            medians = np.median(portable.parity.features, axis=0)
            example = dict(zip(portable.feature_cols, medians.tolist(), strict=True))
        return JSONResponse({
            "model_name": model.name, "model_version": model.version, "model_run_id": model.run_id,
            "threshold": portable.decision.real_threshold, "feature_cols": portable.feature_cols,
            "feature_set": model.feature_set,
            "optional_fields": list(OPTIONAL_FIELDS), "max_batch": serve.max_batch,
            "loaded_at": model.loaded_at, "example": example,
        })

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > serve.max_body_bytes:
            raise RequestRefused(413, "too_large", f"the body exceeds {serve.max_body_bytes} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > serve.max_body_bytes:
                raise RequestRefused(413, "too_large", f"the body exceeds {serve.max_body_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def score_raw(model: LoadedModel, rows: list[Any], single: bool) -> Response:
        """Raw payments: each one's features from the store, in time order, then scored."""
        if payments is None:
            raise RequestRefused(503, "no_online_store", "this service has no online store: send the features "
                                                         "(GET /v1/model lists them)")
        if model.feature_set != payments.feature_set:
            raise RequestRefused(503, "feature_set_mismatch",
                                 f"the service computes feature set {payments.feature_set} ([features]); the model "
                                 f"was trained on {model.feature_set or 'no feature set'}")
        parsed, problems, other_sets = parse_raw(rows, single, secret=payments.secret, time_zone=payments.time_zone,
                                                 problem=_problem, feature_set=model.feature_set)
        if problems:
            raise RequestRefused(422, "invalid", problems[:MAX_PROBLEMS + 1])
        if other_sets:
            raise RequestRefused(409, "feature_set_mismatch", other_sets[:MAX_PROBLEMS + 1])
        order = sorted(range(len(parsed)), key=lambda i: (parsed[i].event_micros, parsed[i].transaction_id))
        if len({tx.transaction_id for tx in parsed}) != len(parsed):
            raise RequestRefused(422, "invalid", [_problem([], "a batch names one transaction id twice",
                                                           "duplicate_id")])
        lookups = [None] * len(parsed)
        try:
            for i in order:  # one after the other: each sees the ones before it in the card's history
                lookups[i] = await payments.online.lookup(parsed[i])
        except StoreRefusal as exc:
            raise RequestRefused(exc.status, exc.kind, exc.detail) from None
        fresh = [i for i in range(len(parsed)) if lookups[i].replay is None]
        kept: list[tuple[RawTransaction, Any, dict[str, Any]]] = []
        answers: list[dict[str, Any] | None] = [
            None if lookups[i].replay is None else answer_from(lookups[i].replay, parsed[i], model.name,
                                                                payments.columns)
            for i in range(len(parsed))]
        if fresh:
            columns = model.portable.feature_cols
            features = np.array([[_model_input(parsed[i], lookups[i].features, name) for name in columns]
                                 for i in fresh], dtype=float)
            probability, is_fraud = score_rows(model, features)
            if np.isnan(probability).any():
                raise RequestRefused(422, "unscorable", "the model gives no probability for these features")
            threshold = model.portable.decision.real_threshold
            for i, p, flagged in zip(fresh, probability.tolist(), is_fraud.tolist(), strict=True):
                tx = parsed[i]
                answer = {"transaction_id": tx.transaction_id, "fraud_probability": p, "is_fraud": flagged,
                          "threshold": threshold, "model_name": model.name, "model_version": model.version,
                          "model_run_id": model.run_id, "feature_set": model.feature_set,
                          "features": {"amount": tx.amount, **lookups[i].features}}
                answers[i] = answer
                kept.append((tx, lookups[i], answer))
            metrics.transactions.labels(model_version=model.version).inc(len(fresh))
            metrics.flagged.labels(model_version=model.version).inc(int(is_fraud.sum()))
            for p in probability.tolist():
                metrics.scores.observe(p)
        metrics.replays.inc(len(parsed) - len(fresh))

        async def keep() -> None:
            """After the answer is sent: each kept in its card entry (for retries), and the echo."""
            for tx, lookup, answer in kept:
                await payments.online.record_answer(tx, lookup.pending_member, stored_answer(answer))
                if payments.echo is not None:
                    payments.echo.write(lookup.day, tx.transaction_id, answer)

        return Response(json.dumps(answers[0] if single else answers), media_type="application/json",
                        background=BackgroundTask(keep))

    async def score(request: Request) -> Response:
        authorized(request)
        model = serving(request)
        body = await read_body(request)
        single = False
        if model.feature_set is not None:  # payments: raw, or with their features
            rows, single = load_rows(body, serve.max_batch)
            if rows and is_raw(rows[0]):
                return await score_raw(model, rows, single)
            body = rows  # features in the request: checked below

        def parse_and_score() -> tuple[list[Any], bool, np.ndarray, np.ndarray]:
            features, ids, single = parse_transactions(body, model.portable.feature_cols, serve.max_batch,
                                                       feature_set=model.feature_set, single=single_object)
            return ids, single, *score_rows(model, features)

        single_object = single
        if isinstance(body, bytes) and len(body) > INLINE_BYTES:  # a batch: parsed and scored on a worker thread
            ids, single, probability, is_fraud = await anyio.to_thread.run_sync(parse_and_score)
        else:
            ids, single, probability, is_fraud = parse_and_score()
        unscorable = np.flatnonzero(np.isnan(probability))
        if unscorable.size:
            raise RequestRefused(422, "unscorable", [_problem(
                [] if single else [int(i)], "the model gives no probability for these values (they are far "
                                            "outside anything it was fitted on)", "unscorable") for i in unscorable])
        threshold = model.portable.decision.real_threshold
        results = []
        for transaction_id, p, flagged in zip(ids, probability.tolist(), is_fraud.tolist(), strict=True):
            result = {"fraud_probability": p, "is_fraud": flagged, "threshold": threshold,
                      "model_name": model.name, "model_version": model.version, "model_run_id": model.run_id}
            if transaction_id is not None:
                result = {"transaction_id": transaction_id, **result}
            results.append(result)
        metrics.transactions.labels(model_version=model.version).inc(len(results))
        metrics.flagged.labels(model_version=model.version).inc(int(is_fraud.sum()))
        for p in probability.tolist():
            metrics.scores.observe(p)
        return Response(json.dumps(results[0] if single else results), media_type="application/json")

    async def index(request: Request) -> Response:
        return HTMLResponse(page)

    @asynccontextmanager
    async def lifespan(app: Starlette):
        watcher.start()
        try:
            yield
        finally:
            watcher.stop()
            if payments is not None:
                await payments.online.close()

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestRefused)
        metrics.errors.labels(kind=exc.kind).inc()
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        # ASCII JSON: a refusal may echo a field name holding anything, lone surrogates too.
        return Response(json.dumps({"detail": exc.detail}), status_code=exc.status, headers=headers,
                        media_type="application/json")

    async def internal_error(request: Request, exc: Exception) -> Response:
        metrics.errors.labels(kind="internal").inc()
        return JSONResponse({"detail": "internal error"}, status_code=500)

    async def http_error(request: Request, exc: Exception) -> Response:
        # Starlette's own refusals (an unknown path, a method a route does not take): in the
        # API's format, not its plain text. Allow and the like are kept.
        assert isinstance(exc, HTTPException)
        metrics.errors.labels(kind=_error_kind(exc.status_code)).inc()
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    app = Starlette(routes=[
        Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics_page),
        Route("/v1/model", model_page), Route("/v1/score", score, methods=["POST"]), Route("/", index),
    ], lifespan=lifespan, exception_handlers={RequestRefused: refused, HTTPException: http_error,
                                              Exception: internal_error})
    return Measured(app, metrics)


def stored_answer(answer: dict[str, Any]) -> list[Any]:
    """What the card's entry keeps of an answer, for a retry: its values without the names (the
    feature set names them), about 200 bytes."""
    return [answer["fraud_probability"], answer["is_fraud"], answer["threshold"], answer["model_version"],
            answer["model_run_id"], answer["feature_set"], list(answer["features"].values())]


def answer_from(stored: list[Any], tx: RawTransaction, model_name: str, columns: tuple[str, ...]) -> dict[str, Any]:
    """The first answer again, from :func:`stored_answer`'s values (made with another feature
    set than the service's, its values come unnamed, as ``feature_values``)."""
    probability, flagged, threshold, version, run_id, feature_set, values = stored
    answer = {"transaction_id": tx.transaction_id, "fraud_probability": probability, "is_fraud": flagged,
              "threshold": threshold, "model_name": model_name, "model_version": version, "model_run_id": run_id,
              "feature_set": feature_set}
    if len(values) == len(columns):
        return {**answer, "features": dict(zip(columns, values, strict=True))}
    return {**answer, "feature_values": values}


def _model_input(tx: RawTransaction, features: dict[str, float | int], name: str) -> float:
    if name == "amount":
        return tx.amount
    if name not in features:
        raise RequestRefused(503, "feature_set_mismatch", f"the model takes {name!r}, which the service's "
                                                          f"[features] do not compute")
    return float(features[name])


def _error_kind(status: int) -> str:
    """The /metrics kind of a refusal by status: "not_found", "method_not_allowed", ..."""
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return f"http_{status}"


def head_bytes(scope: dict[str, Any]) -> int:
    """The size of a request's head as it came on the wire, near enough: its request line
    (method, target, version) and each header as ``name: value`` and a line end."""
    target = len(scope.get("raw_path") or scope["path"].encode()) + len(scope.get("query_string") or b"") + 1
    return len(scope["method"]) + target + 12 + sum(len(name) + len(value) + 4 for name, value in scope["headers"])


class Measured:
    """ASGI middleware: counts and times every request by path and status. An unexpected
    error was answered with a bare 500 by the app's handler; its trace is logged here, once.

    A request whose head is over :data:`MAX_HEAD_BYTES` is refused here with 431, before any
    route reads it: the HTTP layer (h11, see :mod:`~pipelines.serving.cli`) stops a head only
    while it is incomplete, so one that arrived whole in a single read still reaches the app.
    """

    KNOWN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/v1/model", "/v1/score", "/"})

    def __init__(self, app: Starlette, metrics: ServiceMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"] if scope["path"] in self.KNOWN_PATHS else "other"
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if head_bytes(scope) > MAX_HEAD_BYTES:
                self.metrics.errors.labels(kind="headers_too_large").inc()
                await JSONResponse({"detail": f"the request line and headers exceed {MAX_HEAD_BYTES} bytes"},
                                   status_code=431, headers={"Connection": "close"})(scope, receive, send_and_note)
                return
            await self.app(scope, receive, send_and_note)
        except Exception:
            log.exception("an error answering %s %s", scope.get("method"), scope["path"])
        finally:
            self.metrics.requests.labels(path=path, status=str(status)).inc()
            self.metrics.latency.labels(path=path).observe(time.perf_counter() - started)
