"""The HTTP service: one bundle (and one question index) loaded once, then scoring pairs,
finding known duplicates and adding questions over HTTP, through the same code as
`dupq-score` and `dupq-find`.

Heavy work runs on a thread pool sized to the cores, never on the event loop. Concurrent
`/find` requests are batched: the batch loop takes every query waiting when it is free and
looks them all up in one `Finder.find` call. Adds reload the index from disk under the index's
lock (the one `dupq-find --add` takes), add, and save atomically, so concurrent writers from
any process never drop a question.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipeline.bundle import Bundle, load_bundle
from pipeline.find.index import QuestionIndex
from pipeline.find.search import Finder, open_finder
from pipeline.io import exclusive_lock
from pipeline.score import finish_chunk, prepare_chunk

log = logging.getLogger("serve")
disable_created_metrics()  # no *_created series: counters from the process start
STATIC = Path(__file__).parent / "static"
MAX_BODY_BYTES = 4 * 1024 * 1024  # a request body over this is refused (413)
MAX_PAIRS = 10_000  # pairs per /score request, questions per /questions request
MAX_QUESTION_CHARS = 2_000
MAX_TOP_K = 100
FIND_BATCH = 256  # queries looked up together, at most
FIND_LOOPS = 2  # batches run at once: 151-160 against 133-143 requests/s with one (conc. 32)
PREDICT_BATCH = 8192
LOCK_TIMEOUT = 60.0  # seconds an add waits for another writer of the index


def not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("empty or whitespace-only question")
    return text


QuestionText = Annotated[
    str, Field(strict=True, min_length=1, max_length=MAX_QUESTION_CHARS), AfterValidator(not_blank)
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Pair(Strict):
    question1: QuestionText
    question2: QuestionText


class ScoreRequest(Strict):
    pairs: list[Pair] = Field(min_length=1, max_length=MAX_PAIRS)


class PairScore(BaseModel):
    """A scored pair (`probability`, `prediction`: 1 duplicate, 0 not) or why it was not."""

    probability: float | None = None
    prediction: int | None = None
    error: str | None = None


class ScoreResponse(BaseModel):
    model: str
    threshold: float
    results: list[PairScore]


class FindRequest(Strict):
    question: QuestionText
    top_k: int = Field(10, ge=1, le=MAX_TOP_K)


class Match(BaseModel):
    rank: int
    id: str
    question: str
    probability: float
    score: float
    candidate_score: float
    duplicate: bool


class FindResponse(BaseModel):
    question: str
    matches: list[Match]


MATCH_COLUMNS = {  # Match's fields and the `Finder.find` columns they come from, rank first
    "rank": "rank",
    "id": "bank_id",
    "question": "bank_question",
    "probability": "probability",
    "score": "score",
    "candidate_score": "candidate_score",
    "duplicate": "duplicate",
}


class NewQuestion(Strict):
    question: QuestionText
    id: Annotated[str, Field(strict=True, min_length=1, max_length=200)] | None = None


class AddRequest(Strict):
    questions: list[NewQuestion] = Field(min_length=1, max_length=MAX_PAIRS)


class AddResponse(BaseModel):
    added: int
    skipped: dict[str, int]
    bank_size: int


class Service:
    """The loaded bundle and finder, and the work done on them off the event loop."""

    def __init__(self, bundle: Bundle, finder: Finder | None, index_dir: Path | None, threads):
        self.bundle, self.finder, self.index_dir = bundle, finder, index_dir
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="serve")
        self.index_stamp = self._index_stamp()
        self.reloading = threading.Lock()  # one reload at a time, however many finds see it
        self.load_error: str | None = None  # why the model failed to load, once it has
        threading.Thread(target=self._watch_load, daemon=True).start()

    def _watch_load(self) -> None:
        try:
            self.bundle.wait_until_loaded()
        except Exception as err:  # /health and every request then say why
            self.load_error = str(err)

    # -- scoring -----------------------------------------------------------------------------
    def score(self, pairs: list[Pair]) -> list[PairScore]:
        """dupq-score's two halves on one frame: the same code, the same numbers."""
        frame = pd.DataFrame(
            {
                "question1": pd.array([p.question1 for p in pairs], dtype="string"),
                "question2": pd.array([p.question2 for p in pairs], dtype="string"),
            }
        )
        chunk = prepare_chunk(self.bundle, frame, "question1", "question2", PREDICT_BATCH)
        scored = finish_chunk(self.bundle, chunk, self.bundle.threshold, PREDICT_BATCH)
        results = []
        for probability, prediction, error in zip(
            scored["probability"], scored["prediction"], scored["error"], strict=True
        ):
            if error:
                results.append(PairScore(error=error))
            else:
                results.append(PairScore(probability=probability, prediction=int(prediction)))
        return results

    # -- finding -----------------------------------------------------------------------------
    def find(self, requests: list[FindRequest]) -> list[bytes | str]:
        """Each request's FindResponse as JSON (or its error), from one `Finder.find` over
        all of them. The JSON is written here, on a worker thread: building and validating
        pydantic objects on the event loop cost more than the lookup itself."""
        self._reload_if_changed()
        finder = self.finder
        top_k = max(r.top_k for r in requests)
        found = finder.find([r.question for r in requests], top_k)
        matches: list[list[dict]] = [[] for _ in requests]
        errors: dict[int, str] = {}
        columns = zip(
            found["query_row"].tolist(),
            found["error"].tolist(),
            *(found[column].astype(object).tolist() for column in MATCH_COLUMNS.values()),
            strict=True,
        )
        for row, error, *values in columns:
            if error:
                errors[row] = str(error)
            elif values[0] <= requests[row].top_k:
                matches[row].append(dict(zip(MATCH_COLUMNS, values, strict=True)))
        return [
            errors[row]
            if row in errors
            else json.dumps({"question": request.question, "matches": matches[row]}).encode()
            for row, request in enumerate(requests)
        ]

    def add(self, questions: list[NewQuestion]) -> AddResponse:
        """Reload the index under its lock (another process may have added to it), add, save
        atomically, then serve the new index."""
        ids = [q.id for q in questions]
        given_ids = None if all(i is None for i in ids) else ids
        with exclusive_lock(self.index_dir, LOCK_TIMEOUT):
            index = QuestionIndex.load(self.index_dir, self.bundle)
            if given_ids is not None:  # questions without an id get their bank row number
                given_ids = [
                    str(len(index.bank) + n) if i is None else i for n, i in enumerate(given_ids)
                ]
            counts = index.add(pd.Series([q.question for q in questions]), given_ids, self.bundle)
            index.save(self.index_dir)
            self.finder = Finder(index, self.bundle, self.finder.candidates, self.finder.blend)
            self.index_stamp = self._index_stamp()
        skipped = {why: n for why, n in counts.items() if why != "added"}
        return AddResponse(added=counts["added"], skipped=skipped, bank_size=len(index.bank))

    def bank_size(self) -> int | None:
        return None if self.finder is None else len(self.finder.index.bank)

    def _index_stamp(self):
        """What changes when any process writes the index (its index.json is rewritten)."""
        if self.index_dir is None:
            return None
        try:
            stat = (self.index_dir / "index.json").stat()
        except FileNotFoundError:  # between a writer's two renames
            return self.index_stamp
        return (stat.st_mtime_ns, stat.st_ino)

    def _reload_if_changed(self) -> None:
        """Serve questions another process (`dupq-find --add`) added since the last load."""
        if self.index_dir is None or self._index_stamp() == self.index_stamp:
            return
        with self.reloading, exclusive_lock(self.index_dir, LOCK_TIMEOUT):
            if self._index_stamp() == self.index_stamp:  # another thread reloaded it
                return
            index = QuestionIndex.load(self.index_dir, self.bundle)
            self.finder = Finder(index, self.bundle, self.finder.candidates, self.finder.blend)
            self.index_stamp = self._index_stamp()
        log.info("reloaded %s: %d questions", self.index_dir, len(index.bank))


class FindBatcher:
    """Concurrent /find requests looked up together: a loop takes every request waiting when
    it is free (up to FIND_BATCH) and runs them as one batch; FIND_LOOPS loops share the
    queue."""

    def __init__(self, service: Service):
        self.service, self.queue = service, asyncio.Queue()
        self.tasks = [asyncio.create_task(self._loop()) for _ in range(FIND_LOOPS)]

    async def find(self, request: FindRequest):
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((request, future))
        return await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            while len(batch) < FIND_BATCH and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                answers = await loop.run_in_executor(
                    self.service.pool, self.service.find, [request for request, _ in batch]
                )
            except Exception as err:  # every request of the batch gets the error
                for _, future in batch:
                    if not future.done():
                        future.set_exception(err)
                continue
            for (_, future), answer in zip(batch, answers, strict=True):
                if not future.done():
                    future.set_result(answer)

    def stop(self) -> None:
        for task in self.tasks:
            task.cancel()


class BodyLimit:
    """Refuses a request body over `limit` bytes with 413, whether or not it says its length
    (ASGI middleware: the body is counted as it arrives, before the app reads it)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(scope, receive, send)
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if size > self.limit:
                return await self._refuse(scope, receive, send)
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        async def replay():
            return messages.pop(0) if messages else await receive()

        return await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send):
        problem = [{"field": "body", "problem": f"over {self.limit:,} bytes"}]
        response = error_response(413, "request body too large", problem)
        await response(scope, receive, send)


def error_response(status: int, error: str, problems: list[dict] | None = None) -> JSONResponse:
    body = {"error": error}
    if problems:
        body["problems"] = problems
    return JSONResponse(body, status_code=status)


def create_app(
    model: str | Path | None,
    index: str | Path | None = None,
    api_key: str | None = None,
    threads: int | None = None,
) -> FastAPI:
    """The service over a bundle (`model`), a question index (`index`), or both (the index's
    own bundle when `model` is None). A bad bundle or index is a UserError here, before any
    request is served; the model itself loads in the background (/health says when)."""
    threads = threads or os.cpu_count() or 1
    index_dir = None if index is None else Path(index)
    if index_dir is not None:
        finder = open_finder(index_dir, model)
        bundle = finder.bundle
    else:
        if model is None:
            raise ValueError("create_app needs a model, an index, or both")
        finder, bundle = None, load_bundle(model)
    service = Service(bundle, finder, index_dir, threads)
    metrics = Metrics(service)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.batcher = FindBatcher(service)
        yield
        app.state.batcher.stop()
        service.pool.shutdown(wait=True)  # an add in progress finishes writing

    app = FastAPI(
        title="dupq",
        summary="Is this question already asked? Duplicate question pairs, scored and found.",
        version="1",
        lifespan=lifespan,
    )
    app.state.service = service

    def ready() -> JSONResponse | None:
        if bundle.loaded:
            return None
        if service.load_error:
            return error_response(503, f"the model failed to load: {service.load_error}")
        return error_response(503, "the model is still loading")

    def refused(request: Request) -> JSONResponse | None:
        if api_key is None:
            return None
        given = request.headers.get("x-api-key", "")
        if secrets.compare_digest(given.encode(), api_key.encode()):
            return None
        return error_response(401, "missing or wrong X-API-Key header")

    def unavailable(request: Request, needs_index: bool = False) -> JSONResponse | None:
        """Why this request cannot be answered now (a key, the model loading, no index)."""
        if problem := refused(request) or ready():
            return problem
        if needs_index and service.finder is None:
            return error_response(404, "no question index (start dupq-serve with --index)")
        return None

    async def off_loop(function, *args):
        return await asyncio.get_running_loop().run_in_executor(service.pool, function, *args)

    @app.post("/score", response_model=ScoreResponse, response_model_exclude_none=True)
    async def score(body: ScoreRequest, request: Request):
        """P(duplicate) and the prediction at the model's threshold, per pair, in order."""
        if problem := unavailable(request):
            return problem
        results = await off_loop(service.score, body.pairs)
        metrics.pairs.inc(len(results))
        return ScoreResponse(model=bundle.name, threshold=bundle.threshold, results=results)

    @app.post("/find", response_model=FindResponse)
    async def find(body: FindRequest, request: Request):
        """The known questions most likely to be duplicates of `question`, best first."""
        if problem := unavailable(request, needs_index=True):
            return problem
        answer = await app.state.batcher.find(body)
        if isinstance(answer, str):
            return error_response(422, answer, [{"field": "question", "problem": answer}])
        return Response(answer, media_type="application/json")  # a FindResponse's JSON

    @app.post("/questions", response_model=AddResponse)
    async def add_questions(body: AddRequest, request: Request):
        """Add questions to the bank: findable at once, and kept across restarts."""
        if problem := unavailable(request, needs_index=True):
            return problem
        response = await off_loop(service.add, body.questions)
        metrics.bank.set(response.bank_size)
        return response

    @app.get("/health")
    async def health():
        """Ready (200) once the model is loaded; 503 while it loads."""
        facts = {
            "model": bundle.name,
            "kind": bundle.meta["kind"],
            "threshold": bundle.threshold,
            "bank_size": service.bank_size(),
            "api_key_required": api_key is not None,
        }
        if not bundle.loaded:
            failed = {"status": "failed", "error": service.load_error} if service.load_error else {}
            return JSONResponse({"status": "loading", **facts, **failed}, status_code=503)
        return {"status": "ready", **facts}

    @app.get("/metrics")
    async def prometheus_metrics():
        metrics.bank.set(service.bank_size() or 0)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, err: RequestValidationError):
        if "json" not in request.headers.get("content-type", ""):
            detail = [{"field": "body", "problem": "Content-Type is not application/json"}]
            return error_response(415, "send a JSON body", detail)
        if any(e["type"] == "json_invalid" for e in err.errors()):
            problem = err.errors()[0]
            where = f" (character {problem['loc'][-1]})" if len(problem["loc"]) > 1 else ""
            detail = [{"field": "body", "problem": f"{problem['ctx']['error']}{where}"}]
            return error_response(400, "the body is not valid JSON", detail)
        problems = [
            {
                "field": ".".join(str(part) for part in e["loc"] if part != "body") or "body",
                "problem": e["msg"].removeprefix("Value error, "),
            }
            for e in err.errors()
        ]
        return error_response(422, "invalid request", problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException):
        return error_response(err.status_code, f"{err.detail}: {request.method} {request.url.path}")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception):
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(500, f"internal error ({type(err).__name__}); see the server log")

    app.add_middleware(RequestMetrics, metrics=metrics)
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)  # outermost: before anything reads
    return app


class Metrics:
    """Prometheus counters of the service (a registry of its own per app)."""

    def __init__(self, service: Service):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "dupq_requests", "HTTP requests", ["endpoint", "status"], registry=self.registry
        )
        self.errors = Counter(
            "dupq_request_errors",
            "HTTP requests answered with an error (4xx, 5xx)",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "dupq_request_seconds",
            "time to answer a request",
            ["endpoint"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.pairs = Counter("dupq_pairs_scored", "pairs scored by /score", registry=self.registry)
        self.bank = Gauge("dupq_bank_questions", "questions in the bank", registry=self.registry)
        self.bank.set(service.bank_size() or 0)

    def record(self, endpoint: str, status: int, seconds: float) -> None:
        self.latency.labels(endpoint).observe(seconds)
        self.requests.labels(endpoint, str(status)).inc()
        if status >= 400:
            self.errors.labels(endpoint, str(status)).inc()


class RequestMetrics:
    """Counts and times every HTTP request. Plain ASGI middleware: Starlette's
    BaseHTTPMiddleware (`app.middleware("http")`) costs more per request than a lookup."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500  # 500 unless a response starts

        async def send_and_note(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            endpoint = getattr(scope.get("route"), "path", "other")
            self.metrics.record(endpoint, status, time.perf_counter() - start)
