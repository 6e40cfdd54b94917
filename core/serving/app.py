"""The FastAPI app: `create_app()` (an app factory, one per uvicorn worker).

The lifespan opens the registry, loads the version of every alias (through the cache) and
starts the registry follower and the aggregate recorder; at shutdown it stops both and
writes the last aggregates.
"""

from __future__ import annotations

import hmac
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic_core import to_json

from core.config import DEFAULT_MODEL, settings
from core.errors import AltruismError, BadInput, NotFound
from core.registry import Registry
from core.serving import scoring
from core.serving.batching import Batcher
from core.serving.cache import ModelCache, Served
from core.serving.follower import RegistryFollower
from core.serving.recorder import Outcome, Recorder, metrics_text

DEFAULT_MAX_BODY = 8 * 1024 * 1024


@dataclass(frozen=True)
class ServeConfig:
    """The service's settings, from the environment (`SERVE_*`)."""

    model: str
    token: str | None
    poll_s: float
    flush_s: float
    max_body: int
    host_name: str
    log_requests: bool
    batch_max_requests: int = 256
    batch_wait_s: float = 0.0

    @classmethod
    def from_env(cls) -> ServeConfig:
        env = os.environ
        return cls(
            model=env.get("SERVE_MODEL") or DEFAULT_MODEL,
            token=env.get("SERVE_TOKEN") or None,
            poll_s=float(env.get("SERVE_POLL_SECONDS") or 0.5),
            flush_s=float(env.get("SERVE_FLUSH_SECONDS") or 5),
            max_body=int(env.get("SERVE_MAX_BODY_BYTES") or DEFAULT_MAX_BODY),
            host_name=env.get("SERVE_HOST_NAME") or socket.gethostname(),
            log_requests=env.get("SERVE_LOG_REQUESTS") == "1",
            batch_max_requests=int(env.get("SERVE_BATCH_MAX_REQUESTS") or 256),
            batch_wait_s=float(env.get("SERVE_BATCH_WAIT_MS") or 0) / 1000,
        )


class BodyLimit:
    """ASGI middleware: 413 for a body over `limit` bytes (declared or streamed)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _too_large(self.limit, send)
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await _too_large(self.limit, send)


class _TooLarge(Exception):
    pass


async def _too_large(limit: int, send: Callable) -> None:
    response = JSONResponse({"detail": f"the body is limited to {limit:,} bytes"}, 413)
    await response({"type": "http"}, None, send)  # type: ignore[arg-type]


class Service:
    """What one worker holds: registry, cache, follower, recorder and scoring thread."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.registry = Registry()
        self.cache = ModelCache()
        self.follower = RegistryFollower(self.registry, config.model, self.cache, config.poll_s)
        self.recorder = Recorder(
            self.registry, config.host_name, config.flush_s, _request_log(config)
        )
        self.batcher = Batcher(config.batch_max_requests, config.batch_wait_s)

    def start(self) -> None:
        self.follower.start()
        self.recorder.start()
        self.batcher.start()

    def stop(self) -> None:
        self.batcher.stop()
        self.follower.stop()
        self.recorder.stop()
        self.registry.engine.dispose()


def _request_log(config: ServeConfig) -> Path | None:
    if not config.log_requests:
        return None
    folder = settings().log_root / "serving"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"requests-{config.host_name}-{os.getpid()}.jsonl"


def create_app(config: ServeConfig | None = None) -> FastAPI:
    """The service, as uvicorn's `--factory` calls it (once per worker)."""
    config = config or ServeConfig.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = Service(config)
        service.start()
        app.state.service = service
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(
        title="Altruism Lab prediction service",
        version="1",
        description="Scores Random Acts of Pizza requests with the registry's versions; "
        "an alias (`champion`) follows promotions without a restart.",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, limit=config.max_body)
    _routes(app, _auth(config.token))
    _handlers(app)
    return app


def _auth(token: str | None) -> Callable[..., Awaitable[None]]:
    """A dependency: with a token configured, `Authorization: Bearer <token>` is required."""
    expected = f"Bearer {token}".encode() if token else None

    async def check(request: Request) -> None:
        if expected is None:
            return
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise _Unauthorized

    return check


class _Unauthorized(Exception):
    pass


def _service(request: Request) -> Service:
    return request.app.state.service


def _routes(app: FastAPI, auth: Callable[..., Awaitable[None]]) -> None:
    guarded = [Depends(auth)]

    @app.post(
        "/v1/models/{ref}/predict",
        dependencies=guarded,
        response_model=scoring.PredictResult | scoring.BatchResult,
        summary="Score one request or a batch with a version number or alias",
    )
    async def predict(
        ref: str, body: scoring.PredictBody, request: Request, explain: bool = False
    ) -> Response:
        return await _predict(_service(request), ref, body, explain)

    @app.get("/v1/models", dependencies=guarded, summary="Ready versions and aliases")
    async def models(request: Request) -> dict[str, Any]:
        return _models(_service(request))

    @app.get("/healthz", summary="The process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Every alias's version is loaded")
    async def readyz(request: Request) -> Response:
        ok, detail = _service(request).follower.ready()
        return JSONResponse({"ready": ok, **detail}, 200 if ok else 503)

    @app.get("/metrics", dependencies=guarded, summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(metrics_text(), media_type="text/plain; version=0.0.4; charset=utf-8")


async def _predict(
    service: Service, ref: str, body: scoring.PredictBody, explain: bool
) -> Response:
    """Resolve and validate on the event loop; score on the worker's scoring thread,
    possibly in one pass with concurrent calls for the same version."""
    started = time.perf_counter()
    served: Served | None = None
    alias: str | None = None
    try:
        served, alias = service.follower.resolve(ref)
        records = scoring.to_records(body)
        results = await service.batcher.results(served, alias, body, records, explain)
    except scoring.InvalidItem as exc:
        return _finish(service, served, alias, started, _invalid(exc.loc, exc.message))
    except NotFound as exc:
        return _finish(service, served, alias, started, JSONResponse({"detail": str(exc)}, 404))
    except BadInput as exc:
        return _finish(service, served, alias, started, _invalid(["path", "ref"], str(exc)))
    except AltruismError as exc:
        return _finish(service, served, alias, started, JSONResponse({"detail": str(exc)}, 503))
    service.recorder.log_requests(served, alias, body.items(), results)
    if body.requests is None:
        payload: dict[str, Any] = results[0]
    else:
        unknown = body.unknown_fields()
        payload = {"version": served.version, "alias": alias, "unknown_fields": unknown}
        payload["results"] = results
    probabilities = [r["probability"] for r in results]
    flagged = sum(1 for r in results if r["warnings"])
    response = Response(to_json(payload), media_type="application/json")
    return _finish(service, served, alias, started, response, probabilities, flagged)


def _finish(
    service: Service,
    served: Served | None,
    alias: str | None,
    started: float,
    response: Response,
    probabilities: list[float] | None = None,
    flagged: int = 0,
) -> Response:
    seconds = time.perf_counter() - started
    outcome = Outcome(served, alias, response.status_code, seconds, probabilities or [], flagged)
    service.recorder.observe(outcome)
    return response


def _invalid(loc: list[Any], message: str) -> JSONResponse:
    return JSONResponse({"detail": [{"loc": loc, "msg": message, "type": "value_error"}]}, 422)


def _models(service: Service) -> dict[str, Any]:
    registry, model = service.registry, service.config.model
    aliases = registry.aliases_by_version(model)
    versions = [
        {
            "version": r.version,
            "recipe": r.recipe,
            "threshold": r.threshold,
            "threshold_policy": r.threshold_policy,
            "roc_auc": (r.metrics or {}).get("roc_auc"),
            "aliases": aliases.get(r.id, []),
        }
        for r in registry.version_summaries(model, include_archived=False)
        if r.status == "ready"
    ]
    served = {a: s.version for a, s in service.follower.aliases().items()}
    return {"model": model, "aliases": served, "versions": versions}


def _handlers(app: FastAPI) -> None:
    @app.exception_handler(_Unauthorized)
    async def unauthorized(request: Request, exc: _Unauthorized) -> Response:
        return JSONResponse(
            {"detail": "a bearer token is required (Authorization: Bearer $SERVE_TOKEN)"},
            401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"loc": list(e.get("loc", [])), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        response = JSONResponse({"detail": errors}, 422)
        service = getattr(request.app.state, "service", None)
        if service is not None and "ref" in request.path_params:
            served, alias = _quiet_resolve(service, request.path_params["ref"])
            _finish(service, served, alias, time.perf_counter(), response)
        return response


def _quiet_resolve(service: Service, ref: str) -> tuple[Served | None, str | None]:
    try:
        return service.follower.resolve(ref)
    except (AltruismError, OSError):
        return None, None
