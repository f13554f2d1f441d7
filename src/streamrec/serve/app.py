"""The StreamRec service: the system behind an HTTP API (FastAPI), with its page.

:func:`create_app` makes the FastAPI application of a system directory; ``streamrec serve
SYSTEM_DIR`` runs it with uvicorn (:func:`run_server`). A :class:`Service` holds

* the served system (:func:`~streamrec.serve.system.load_system`), the history it serves from
  and the users' live states (:class:`~streamrec.serve.events.LiveStates`);
* the durable event log (:class:`~streamrec.serve.events.EventLog`): ``POST /events`` writes
  and ``fsync`` s an event before it answers, then applies it, so the user's next
  recommendations see it; on start the log is replayed;
* the service clock (:class:`~streamrec.serve.events.ServiceClock`) and the metrics
  (Prometheus).

The system's work runs on the event loop (it is CPU-bound and short; one thread avoids
contention for the interpreter), batched: the recommendation requests pending when the loop
gets to them are served by one call of the system (:class:`Batcher`). What waits runs on worker
threads while requests go on: writing the log, loading a new system. Several processes
(``--workers``) share the log: each one catches up with it before it answers, so an event
acknowledged by one is seen by the next request to any.

Every error is a JSON object ``{"error": "..."}`` that says what is wrong: 400 malformed JSON,
401 missing or wrong API key, 404 unknown user / item / route, 405, 409 reload in progress, 413
body too large, 415 body not JSON, 422 wrong types or values (unknown ids in a body, ``k`` out
of range), 503 the event log cannot be written.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import Body, Query, Security
from fastapi import Path as PathParam
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field

from streamrec.data.dataset import ENGAGEMENT_TYPES, Dataset
from streamrec.serve.events import EventLog, EventLogError, LiveStates, ServiceClock
from streamrec.serve.state import HistoryIndex, UserState

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_BODY = 64 * 1024
DEFAULT_MAX_BATCH = 16
MAX_K = 100
MAX_SESSION_ITEMS = 200
API_KEY_ENV = "STREAMREC_API_KEY"
API_KEY_HEADER = "X-API-Key"
#: (method, path) of the writes that need the API key when one is set
WRITES = {("POST", "/events"), ("POST", "/admin/reload")}
EVENTS_FILE = "events.jsonl"
PAGE = Path(__file__).with_name("page.html")


class ServiceError(Exception):
    """An error answered as ``{"error": message}`` with an HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ============================================================================ the state
@dataclass
class Snapshot:
    """One loaded system with the live states of its users (swapped whole on reload)."""

    path: Path
    run: Any  # SystemRun
    history: Dataset
    live: LiveStates
    generation: int
    categories: list[str] | None
    counts: np.ndarray  # interactions per item in the history
    loaded_at: float

    @property
    def ds(self) -> Dataset:
        return self.run.dataset

    @property
    def system(self) -> Any:
        return self.run.model


def load_snapshot(path: str | Path, generation: int = 0) -> Snapshot:
    """Load a system directory for serving (no log applied yet)."""
    from streamrec.serve.system import load_system

    path = Path(path).resolve()
    run = load_system(path)
    history = run.split.history(run.dataset, "test")
    index = HistoryIndex(history, run.model.blocks)
    cats = run.dataset.meta.get("categories")
    snap = Snapshot(path, run, history, LiveStates(run.dataset, history, index), generation,
                    list(cats) if isinstance(cats, list) else None,
                    np.bincount(history.item, minlength=run.dataset.n_items),
                    time.time())
    warm_up(snap)
    return snap


def warm_up(snap: Snapshot) -> None:
    """Serve a few requests before the first real one (lazy indexes, first-call costs)."""
    t = np.array([int(snap.history.timestamp.max()) + 1 if snap.history.n_interactions else 1])
    states = [UserState(-1)]
    if snap.ds.n_users:
        states.append(snap.live.index.state(0))
        if snap.ds.n_items:
            states.append(UserState(-1).with_events(np.array([0]), t - 1))
    for s in states:
        for explain in (False, True):
            snap.system.serve([s], snap.history, k=10, t=t, explain=explain)
    snap.system.serve(states * 3, snap.history, k=10, t=np.repeat(t, 3 * len(states)))


class Service:
    """The served system, its event log and live states, the clock and the metrics.

    system_dir: the system directory; events: the log file (default
    ``SYSTEM_DIR/events.jsonl``); api_key: the key writes need (None: no key); max_body: the
    largest request body in bytes; control: a file several processes use to follow a reload
    (set by ``streamrec serve --workers N``); max_batch: the most recommendation requests served
    in one call of the system (:class:`Batcher`; 1: one at a time).
    """

    def __init__(self, system_dir: str | Path, events: str | Path | None = None,
                 api_key: str | None = None, max_body: int = DEFAULT_MAX_BODY,
                 control: str | Path | None = None, max_batch: int = DEFAULT_MAX_BATCH
                 ) -> None:
        self.started = time.time()
        self.api_key = api_key or None
        self.max_body = int(max_body)
        self.control = Path(control) if control else None
        generation, system_dir = self._read_control(system_dir)
        self.snap = load_snapshot(system_dir, generation)
        self.log = EventLog(Path(events) if events else self.snap.path / EVENTS_FILE)
        records = self.log.read_new()
        self.snap.live.apply(records)
        latest = int(self.snap.history.timestamp.max()) if self.snap.history.n_interactions \
            else 0
        self.clock = ServiceClock(max([latest] + [r["timestamp"] for r in records]))
        self.metrics = Metrics()
        self.batcher = Batcher(self, max_batch)
        self.reloading = False
        self._buffer: list[dict[str, Any]] | None = None  # records seen while reloading
        self._pending: Snapshot | None = None  # a reload loaded in the background
        self._control_mtime = self._control_stamp()

    # ------------------------------------------------------------------ log and reload
    def sync(self) -> None:
        """Catch up with the log (events this or another process appended) and, with several
        processes, with a reload another one did."""
        records = self.log.read_new()
        if records:
            self.snap.live.apply(records)
            self.clock.saw(max(r["timestamp"] for r in records))
            if self._buffer is not None:
                self._buffer.extend(records)
        if self._pending is not None:
            self._swap(self._pending)
            self._pending = None
        if self.control is not None and not self.reloading:
            stamp = self._control_stamp()
            if stamp != self._control_mtime:
                self._control_mtime = stamp
                generation, path = self._read_control(None)
                if generation > self.snap.generation:
                    self._follow(path, generation)

    def _swap(self, snap: Snapshot) -> None:
        snap.live.apply(self._buffer or [])
        self._buffer = None
        self.snap = snap
        self.reloading = False

    async def reload(self, path: str) -> dict[str, Any]:
        """Load another system directory on a worker thread while requests go on, then swap
        it in between two requests (the log is replayed into it)."""
        from streamrec.serve.system import is_system_dir

        if self.reloading:
            raise ServiceError(409, "a reload is in progress; try again when it has finished")
        target = Path(path).expanduser()
        if not target.is_dir() or not is_system_dir(target):
            raise ServiceError(422, f"{path!r} is not a system directory (no system.json); "
                                    "build one with `streamrec system build`")
        self.reloading = True
        self._buffer = []
        t0 = time.perf_counter()
        generation = self.snap.generation + 1
        try:
            snap = await asyncio.to_thread(self._build, target, generation)
        except Exception as e:  # noqa: BLE001 - any failure leaves the served system as it was
            self.reloading = False
            self._buffer = None
            raise ServiceError(422, f"cannot load {path!r}: {' '.join(str(e).split())}"
                               ) from None
        self.sync()
        self._swap(snap)
        self._write_control(snap)
        return {"system_dir": str(snap.path), "generation": snap.generation,
                "users": snap.ds.n_users, "items": snap.ds.n_items,
                "events_applied": snap.live.applied,
                "seconds": round(time.perf_counter() - t0, 3)}

    def _build(self, path: Path, generation: int) -> Snapshot:
        from streamrec.serve.events import read_records

        snap = load_snapshot(path, generation)
        snap.live.apply(read_records(self.log.path))
        return snap

    def _follow(self, path: str, generation: int) -> None:
        """Load the system another process reloaded, in the background."""
        self.reloading = True
        self._buffer = []

        def work() -> None:
            try:
                self._pending = self._build(Path(path), generation)
            except Exception:  # noqa: BLE001 - keep serving the old one
                self.reloading = False
                self._buffer = None

        threading.Thread(target=work, daemon=True).start()

    def _control_stamp(self) -> int:
        try:
            return self.control.stat().st_mtime_ns if self.control else 0
        except OSError:
            return 0

    def _read_control(self, default: str | Path | None) -> tuple[int, str]:
        if self.control is not None:
            try:
                c = json.loads(self.control.read_text())
                return int(c["generation"]), str(c["system_dir"])
            except (OSError, ValueError, KeyError, TypeError):
                pass
        return 0, str(default)

    def _write_control(self, snap: Snapshot) -> None:
        if self.control is None:
            return
        from streamrec.common import write_text_atomic

        write_text_atomic(self.control, json.dumps(
            {"system_dir": str(snap.path), "generation": snap.generation}))
        self._control_mtime = self._control_stamp()

    # ------------------------------------------------------------------ ids and rows
    def item(self, snap: Snapshot, item_id: str, status: int = 404) -> int:
        try:
            return snap.ds.item_index(item_id)
        except KeyError:
            raise ServiceError(status, f"unknown item id {item_id!r}") from None

    def category(self, snap: Snapshot, i: int) -> str | None:
        cat = snap.ds.items.get("category")
        if cat is None:
            return None
        c = int(cat[i])
        if snap.categories is not None and 0 <= c < len(snap.categories):
            return str(snap.categories[c])
        return str(c)

    def title(self, snap: Snapshot, i: int) -> str | None:
        t = snap.ds.items.get("title")
        return None if t is None else str(t[i])

    # ------------------------------------------------------------------ recommendations
    async def recommend(self, snap: Snapshot, state: UserState, k: int, explain: bool,
                        user_id: str | None) -> dict[str, Any]:
        """Serve one state (batched with the requests that arrive meanwhile): the response
        of the recommendation endpoints."""
        from streamrec.serve.system import why

        served, timings, now, size = await self.batcher.submit(snap, state, k, explain)
        candidates = (served.ranks > 0).sum(0)
        per_source = {name: int(n) for name, n in zip(served.source_names, candidates)}
        self.metrics.candidates_of(per_source)
        ds = snap.ds
        items = []
        for j in range(min(k, len(served.items))):
            i = int(served.items[j])
            info = served.info(j)
            row = {"item_id": str(ds.item_ids[i]), "score": _finite(served.scores[j]),
                   "title": self.title(snap, i), "category": self.category(snap, i),
                   "sources": info["sources"], "why": why(info, ds)}
            if explain:
                row["explanation"] = {
                    "positions": info["positions"],
                    "ranker": info.get("ranker", []),
                    "attended": [{"item_id": str(ds.item_ids[a["item"]]),
                                  "weight": float(a["weight"])}
                                 for a in info.get("attended", [])],
                }
            items.append(row)
        return {"user_id": user_id, "items": items, "k": k, "cold": state.user < 0,
                "clock": now, "generation": snap.generation, "batch": size,
                "timings_ms": {key: round(v * 1000.0, 3) for key, v in timings.items()},
                "candidates": per_source}

    def serve_batch(self, snap: Snapshot, states: list[UserState], k: int, explain: bool
                    ) -> tuple[list[Any], dict[str, float], int]:
        """Run the system for a batch of states at the service's clock: (served per state,
        seconds per stage of the batch, the clock)."""
        now = self.clock.now()
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        served = snap.system.serve(states, snap.history, k=k,
                                   t=np.full(len(states), now, dtype=np.int64),
                                   explain=explain, timings=timings)
        total = time.perf_counter() - t0
        if explain:  # the explanations run after the stages
            timings["explain"] = max(0.0, total - sum(timings.values()))
        timings["total"] = total
        self.metrics.served(timings, len(states))
        return served, timings, now

    def user_view(self, snap: Snapshot, user_id: str, recent: int) -> dict[str, Any]:
        state = snap.live.state(user_id)
        logged = {(item, ts) for _, item, _, ts in snap.live.logged.get(user_id, [])}
        n = state.n_events
        rows = []
        for j in range(n - 1, max(n - recent, 0) - 1, -1):
            i, ts = int(state.items[j]), int(state.timestamps[j])
            code = int(state.engagement[j]) if state.engagement is not None else 0
            rows.append({"item_id": str(snap.ds.item_ids[i]), "title": self.title(snap, i),
                         "category": self.category(snap, i),
                         "event": ENGAGEMENT_TYPES[code] if 0 <= code < len(ENGAGEMENT_TYPES)
                         else "click", "timestamp": ts,
                         "logged": (i, ts) in logged})
        return {"user_id": user_id, "in_dataset": state.user >= 0, "events": n,
                "logged_events": len(snap.live.logged.get(user_id, [])), "recent": rows}


# ============================================================================ batching
class Batcher:
    """Dynamic batching of recommendation requests.

    A request does not call the system itself: it joins the pending list and, if no run is
    scheduled, schedules one on the event loop (``call_soon``). The run takes every request
    pending by then (up to ``max_batch``; the rest in the next run): those that arrived while the
    system was busy with the previous batch, or in the same turn of the loop. The system is a
    batch pipeline (sources, features and ranker work on many users at once), so 8 users cost
    about 2.5 times one, not 8: under load the throughput grows and the queue stays short; alone,
    a request is served at once, with no wait for a batch to fill.
    """

    def __init__(self, service: Service, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        self.service = service
        self.max_batch = max(1, int(max_batch))
        self.pending: list[tuple[Snapshot, UserState, int, bool, asyncio.Future]] = []
        self.scheduled = False

    def submit(self, snap: Snapshot, state: UserState, k: int, explain: bool
               ) -> asyncio.Future:
        """A future of (served, timings of its batch, clock, batch size)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self.pending.append((snap, state, k, explain, fut))
        if not self.scheduled:
            self.scheduled = True
            loop.call_soon(self._run)
        return fut

    def _run(self) -> None:
        self.scheduled = False
        batch = self.pending[: self.max_batch]
        del self.pending[: self.max_batch]
        if self.pending:  # the rest after the loop has had a turn (I/O, other tasks)
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self._run)
        groups: dict[tuple[int, int, bool], list[tuple]] = {}
        for entry in batch:
            if not entry[4].done():  # a client that went away is not served
                groups.setdefault((id(entry[0]), entry[2], entry[3]), []).append(entry)
        for (_, k, explain), group in groups.items():
            try:
                served, timings, now = self.service.serve_batch(
                    group[0][0], [e[1] for e in group], k, explain)
            except Exception as e:  # noqa: BLE001 - every request of the batch gets it
                for entry in group:
                    if not entry[4].done():
                        entry[4].set_exception(e)
                continue
            for entry, one in zip(group, served):
                if not entry[4].done():
                    entry[4].set_result((one, timings, now, len(group)))


# ============================================================================ metrics
class Metrics:
    """The service's Prometheus metrics (a registry of its own, or the multi-process
    collector when ``PROMETHEUS_MULTIPROC_DIR`` is set)."""

    def __init__(self) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Histogram,
            disable_created_metrics,
        )

        disable_created_metrics()
        self.registry = CollectorRegistry()
        buckets = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05,
                   0.075, 0.1, 0.25, 0.5, 1.0, 2.5)
        self.requests = Counter("streamrec_requests", "HTTP requests by route and status",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("streamrec_request_seconds", "HTTP request latency by route",
                                 ["method", "route"], buckets=buckets, registry=self.registry)
        self.stage = Histogram("streamrec_stage_seconds", "Time per stage of the system "
                               "(source:NAME, merge, filters, ranker, reranker, total)",
                               ["stage"], buckets=buckets, registry=self.registry)
        self.candidates = Histogram("streamrec_candidates", "Candidates per request and source "
                                    "(after the filters)", ["source"],
                                    buckets=(0, 1, 5, 10, 25, 50, 100, 200, 500),
                                    registry=self.registry)
        self.events = Counter("streamrec_events", "Events logged, by type", ["event"],
                              registry=self.registry)
        self.batch = Histogram("streamrec_batch_size", "Requests served by one call of the "
                               "system (dynamic batching)", buckets=(1, 2, 4, 8, 16, 32, 64),
                               registry=self.registry)
        self._stage: dict[str, Any] = {}
        self._cand: dict[str, Any] = {}
        self._route: dict[tuple[str, str], Any] = {}

    def served(self, timings: dict[str, float], size: int) -> None:
        """One call of the system: seconds per stage, the batch's size."""
        for key, v in timings.items():
            h = self._stage.get(key)
            if h is None:
                h = self._stage[key] = self.stage.labels(key)
            h.observe(v)
        self.batch.observe(size)

    def candidates_of(self, per_source: dict[str, int]) -> None:
        for key, n in per_source.items():
            h = self._cand.get(key)
            if h is None:
                h = self._cand[key] = self.candidates.labels(key)
            h.observe(n)

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route)
        h = self._route.get(key)
        if h is None:
            h = self._route[key] = self.latency.labels(method, route)
        h.observe(seconds)
        self.requests.labels(method, route, str(status)).inc()

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        registry = self.registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import CollectorRegistry, multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST


# ============================================================================ middleware
def _json_error(status: int, message: str) -> tuple[dict[str, Any], list[Any]]:
    body = json.dumps({"error": message}).encode()
    start = {"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())]}
    return start, [{"type": "http.response.body", "body": body}]


class Gate:
    """ASGI middleware in front of the app: the API key of writes, the body limit (the whole
    body is read, at most ``max_body`` bytes, before the app sees it), JSON bodies only, the
    request metrics, and a last JSON answer for anything that escaped."""

    def __init__(self, app: Any, service: Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        method, path = scope["method"], scope["path"]
        status = 500
        started = False

        async def send_wrapped(message: dict[str, Any]) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
            await send(message)

        async def answer(code: int, message: str) -> None:
            start, body = _json_error(code, message)
            await send_wrapped(start)
            for m in body:
                await send_wrapped(m)

        try:
            problem = self._check(scope, method, path)
            if problem is not None:
                await answer(*problem)
            elif method in ("POST", "PUT", "PATCH"):
                body, problem = await self._read_body(scope, receive)
                if problem is not None:
                    await answer(*problem)
                else:
                    sent = False

                    async def replay() -> dict[str, Any]:
                        nonlocal sent
                        if not sent:
                            sent = True
                            return {"type": "http.request", "body": body, "more_body": False}
                        return await receive()

                    await self.app(scope, replay, send_wrapped)
            else:
                await self.app(scope, receive, send_wrapped)
        except Exception as e:  # noqa: BLE001 - the last line: a JSON error, never a crash
            if not started:
                await answer(500, f"internal error ({type(e).__name__}); it was logged")
            import logging

            logging.getLogger("streamrec.serve").exception("unhandled error on %s %s",
                                                           method, path)
        route = scope.get("route")
        name = getattr(route, "path", None) or ("gate" if status in (401, 413, 415)
                                                else "unmatched")
        self.service.metrics.request(method, name, status, time.perf_counter() - t0)

    def _check(self, scope: dict[str, Any], method: str, path: str) -> tuple[int, str] | None:
        svc = self.service
        if (method, path) in WRITES and svc.api_key is not None:
            given = None
            for k, v in scope.get("headers", []):
                if k == b"x-api-key":
                    given = v.decode("latin-1")
            if given is None:
                return 401, f"{method} {path} needs the header {API_KEY_HEADER} (the key set in " \
                            f"{API_KEY_ENV} when the service started)"
            if not hmac.compare_digest(given.encode("latin-1"), svc.api_key.encode()):
                return 401, f"wrong {API_KEY_HEADER} for {method} {path}"
        return None

    async def _read_body(self, scope: dict[str, Any], receive: Any
                         ) -> tuple[bytes, tuple[int, str] | None]:
        limit = self.service.max_body
        ctype = None
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    if int(v) > limit:
                        return b"", (413, f"request body too large: {int(v):,} bytes; the "
                                          f"limit is {limit:,}")
                except ValueError:
                    return b"", (400, "the Content-Length header is not a number")
            elif k == b"content-type":
                ctype = v.decode("latin-1").split(";")[0].strip().lower()
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"", (400, "the client went away before sending the body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return b"", (413, f"request body too large: over {limit:,} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and (ctype is None or not (ctype == "application/json"
                                           or ctype.endswith("+json"))):
            return b"", (415, f"send the body as JSON (Content-Type: application/json), got "
                              f"{ctype or 'no Content-Type'}")
        return body, None


# ============================================================================ the schema
Id = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x20/\x7f]+$")]
EventName = Literal["click", "partial_view", "full_view", "save", "share"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class EventIn(Strict):
    """An event: a user did something with an item."""

    user_id: Id
    item_id: Id
    event: EventName
    timestamp: Annotated[int, Field(ge=0, le=2**53)] | None = Field(
        None, description="seconds on the data's clock; default: the service's clock")
    event_id: Id | None = Field(
        None, description="the client's idempotency key: an event with a key already "
                          "logged is not logged again (the first one is returned)")


class EventOut(BaseModel):
    seq: int
    user_id: str
    item_id: str
    event: EventName
    timestamp: int
    event_id: str | None
    duplicate: bool
    new_user: bool


class SessionIn(Strict):
    """An ad-hoc session: recent items (oldest first), optionally of a user."""

    items: list[Id] = Field(min_length=1, max_length=MAX_SESSION_ITEMS)
    user_id: Id | None = None
    k: int = Field(10, ge=1, le=MAX_K)
    explain: bool = False


class ReloadIn(Strict):
    system_dir: str = Field(min_length=1, max_length=4096)


class Explanation(BaseModel):
    positions: dict[str, int]
    ranker: list[dict[str, Any]]
    attended: list[dict[str, Any]]


class ItemOut(BaseModel):
    item_id: str
    score: float | None
    title: str | None
    category: str | None
    sources: list[str]
    why: str
    explanation: Explanation | None = None


class RecommendationsOut(BaseModel):
    user_id: str | None
    items: list[ItemOut]
    k: int
    cold: bool = Field(description="served without a dataset user: session, content "
                                   "neighbours and popularity only")
    clock: int
    generation: int
    batch: int = Field(description="requests served together with this one by one call of the "
                                   "system (dynamic batching); timings_ms are that call's")
    timings_ms: dict[str, float]
    candidates: dict[str, int]


class ItemDetail(BaseModel):
    item_id: str
    title: str | None
    category: str | None
    text: str | None
    release_ts: int | None
    available: bool
    interactions: int


class Neighbour(BaseModel):
    item_id: str
    title: str | None
    category: str | None
    cosine: float | None


class SimilarOut(BaseModel):
    item_id: str
    items: list[Neighbour]


class RecentEvent(BaseModel):
    item_id: str
    title: str | None
    category: str | None
    event: str
    timestamp: int
    logged: bool


class UserOut(BaseModel):
    user_id: str
    in_dataset: bool
    events: int
    logged_events: int
    recent: list[RecentEvent]


class UsersOut(BaseModel):
    users: list[str]
    total: int
    new_users: list[str]


class HealthOut(BaseModel):
    status: str
    system_dir: str
    generation: int
    users: int
    items: int
    event_log: str
    events_logged: int
    events_applied: int
    log_lines_skipped: int
    clock: int
    uptime_s: float
    reloading: bool
    writes_need_key: bool
    pid: int


class ReloadOut(BaseModel):
    system_dir: str
    generation: int
    users: int
    items: int
    events_applied: int
    seconds: float


class ErrorOut(BaseModel):
    error: str


K = Annotated[int, Query(ge=1, le=MAX_K, description="how many items")]
UserPath = Annotated[str, PathParam(min_length=1, max_length=128)]
ItemPath = Annotated[str, PathParam(min_length=1, max_length=128)]
#: the API key of writes, in the schema (the check itself is :class:`Gate`'s, before the body)
key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                          description=f"needed by writes when {API_KEY_ENV} is set")
ApiKey = Annotated[str | None, Security(key_header)]


# ============================================================================ the app
def _where(loc: tuple[Any, ...]) -> str:
    if not loc:
        return "request"
    kind, rest = str(loc[0]), loc[1:]
    path = ""
    for part in rest:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    if kind == "body":
        return f"body{'.' + path if path and not path.startswith('[') else path}"
    return f"{kind} parameter {path}" if path else kind


def validation_message(errors: list[dict[str, Any]]) -> tuple[int, str]:
    """(status, message) of FastAPI's validation errors: 400 for malformed JSON, else 422
    naming each wrong field."""
    for e in errors:
        if e.get("type") == "json_invalid":
            detail = (e.get("ctx") or {}).get("error", "")
            pos = e["loc"][1] if len(e.get("loc", ())) > 1 else None
            at = f" at character {pos}" if isinstance(pos, int) else ""
            return 400, f"malformed JSON{at}: {detail}".rstrip(": ")
    parts = []
    for e in errors[:5]:
        msg = e.get("msg", "invalid")
        if e.get("type") == "missing":
            msg = "required"
        elif e.get("type") == "extra_forbidden":
            msg = "not a known field"
        parts.append(f"{_where(tuple(e.get('loc', ())))}: {msg}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return 422, "; ".join(parts) + more


def create_app(system_dir: str | Path | None = None, events: str | Path | None = None,
               api_key: str | None = None, max_body: int = DEFAULT_MAX_BODY,
               service: Service | None = None, control: str | Path | None = None,
               max_batch: int = DEFAULT_MAX_BATCH) -> Any:
    """The FastAPI app serving a system directory (or an existing :class:`Service`)."""
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    if service is None:
        if system_dir is None:
            raise ValueError("give a system directory or a service")
        service = Service(system_dir, events, api_key, max_body, control, max_batch)
    svc = service

    def err(*codes: int) -> dict[int | str, dict[str, Any]]:
        return {c: {"model": ErrorOut} for c in codes}

    app = FastAPI(
        title="StreamRec",
        version="1",
        description="Recommendations from the StreamRec system (retrieve -> filter -> rank -> "
                    "re-rank), live events, item details. Every error is "
                    "`{\"error\": \"...\"}`.",
    )
    app.state.service = svc

    def ok(content: Any, status: int = 200) -> JSONResponse:
        return JSONResponse(content, status_code=status)

    @app.exception_handler(ServiceError)
    async def _service_error(request: Any, exc: ServiceError) -> JSONResponse:
        return ok({"error": exc.message}, exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Any, exc: RequestValidationError) -> JSONResponse:
        code, message = validation_message(list(exc.errors()))
        return ok({"error": message}, code)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Any, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return JSONResponse({"error": message}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    # ------------------------------------------------------------------ reads
    @app.get("/users/{user_id}/recommendations", response_model=RecommendationsOut,
             responses=err(404, 422), tags=["recommendations"])
    async def user_recommendations(user_id: UserPath, k: K = 10,
                                   explain: bool = False) -> Any:
        """The top k for a user: one of the dataset, or a new user known by their events."""
        svc.sync()
        snap = svc.snap
        if not snap.live.knows(user_id):
            raise ServiceError(404, f"unknown user id {user_id!r}: neither in the dataset nor "
                                    "seen in an event (POST /recommendations serves an "
                                    "anonymous session)")
        return ok(await svc.recommend(snap, snap.live.state(user_id), k, explain, user_id))

    @app.post("/recommendations", response_model=RecommendationsOut,
              responses=err(400, 413, 415, 422), tags=["recommendations"])
    async def session_recommendations(session: SessionIn) -> Any:
        """The top k after an ad-hoc session of recent items (not recorded). A known user's
        history and events come first; an absent or unknown user gets the cold path."""
        svc.sync()
        snap = svc.snap
        index, unknown = [], []
        for i in session.items:
            try:
                index.append(snap.ds.item_index(i))
            except KeyError:
                unknown.append(i)
        if unknown:
            raise ServiceError(422, f"body.items: unknown item id(s) "
                                    f"{', '.join(repr(u) for u in unknown[:5])}")
        items = np.array(index, dtype=np.int64)
        user = session.user_id
        state = snap.live.state(user) if user is not None else UserState(-1)
        now = svc.clock.now()
        ts = np.arange(now - len(items) + 1, now + 1, dtype=np.int64)
        ts = np.maximum(ts, state.last_time(0))
        state = state.with_events(items, ts, np.zeros(len(items), np.int64))
        return ok(await svc.recommend(snap, state, session.k, session.explain, user))

    @app.get("/items/{item_id}", response_model=ItemDetail, responses=err(404, 422),
             tags=["items"])
    async def item_detail(item_id: ItemPath) -> Any:
        """An item of the catalogue."""
        snap = svc.snap
        i = svc.item(snap, item_id)
        ds = snap.ds
        text = ds.items.get("text")
        rel = ds.items.get("release_ts")
        avail = ds.items.get("available")
        return ok({"item_id": item_id, "title": svc.title(snap, i),
                   "category": svc.category(snap, i),
                   "text": None if text is None else str(text[i]),
                   "release_ts": None if rel is None else int(rel[i]),
                   "available": True if avail is None else bool(avail[i]),
                   "interactions": int(snap.counts[i])})

    @app.get("/items/{item_id}/similar", response_model=SimilarOut, responses=err(404, 422),
             tags=["items"])
    async def similar(item_id: ItemPath, k: K = 10) -> Any:
        """The k items nearest to an item by the system's item embeddings (cosine)."""
        snap = svc.snap
        i = svc.item(snap, item_id)
        items, cos = _neighbours(snap, i, k)
        rows = [{"item_id": str(snap.ds.item_ids[j]), "title": svc.title(snap, int(j)),
                 "category": svc.category(snap, int(j)), "cosine": _finite(c)}
                for j, c in zip(items, cos)]
        return ok({"item_id": item_id, "items": rows})

    @app.get("/users", response_model=UsersOut, tags=["users"])
    async def users(limit: Annotated[int, Query(ge=1, le=1000)] = 50,
                    offset: Annotated[int, Query(ge=0)] = 0) -> Any:
        """Users to choose from: the dataset's (a page of them) and the new ones."""
        svc.sync()
        snap = svc.snap
        ids = snap.ds.user_ids[offset: offset + limit].tolist()
        return ok({"users": ids, "total": snap.ds.n_users,
                   "new_users": snap.live.new_users()[-limit:]})

    @app.get("/users/{user_id}", response_model=UserOut, responses=err(404, 422),
             tags=["users"])
    async def user(user_id: UserPath,
                   recent: Annotated[int, Query(ge=0, le=200)] = 10) -> Any:
        """A user's latest events (history and logged)."""
        svc.sync()
        snap = svc.snap
        if not snap.live.knows(user_id):
            raise ServiceError(404, f"unknown user id {user_id!r}")
        return ok(svc.user_view(snap, user_id, recent))

    @app.get("/health", response_model=HealthOut, tags=["service"])
    async def health() -> Any:
        """Liveness and what is served."""
        svc.sync()
        snap = svc.snap
        return ok({"status": "ok", "system_dir": str(snap.path), "generation": snap.generation,
                   "users": snap.ds.n_users, "items": snap.ds.n_items,
                   "event_log": str(svc.log.path), "events_logged": svc.log.last_seq,
                   "events_applied": snap.live.applied,
                   "log_lines_skipped": svc.log.skipped, "clock": svc.clock.now(),
                   "uptime_s": round(time.time() - svc.started, 3),
                   "reloading": svc.reloading, "writes_need_key": svc.api_key is not None,
                   "pid": os.getpid()})

    @app.get("/metrics", tags=["service"], response_class=Response,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                              "description": "Prometheus text format"}})
    async def metrics() -> Any:
        """Prometheus metrics: requests, latency per route and per stage, candidates per
        source, events."""
        data, ctype = svc.metrics.render()
        return Response(data, media_type=ctype)

    @app.get("/", include_in_schema=False)
    async def page() -> Any:
        return HTMLResponse(PAGE.read_text())

    # ------------------------------------------------------------------ writes
    @app.post("/events", response_model=EventOut, status_code=201,
              responses={200: {"model": EventOut, "description": "already logged under this "
                               "event_id (nothing written)"}, **err(400, 401, 413, 415, 422,
                                                                  503)},
              tags=["events"])
    async def post_event(event: Annotated[EventIn, Body()],
                         key: ApiKey = None) -> Any:
        """Record an event: written to the durable log (fsync) before the answer, and seen
        at once by the user's next recommendations. A new user appears with their first
        event."""
        snap = svc.snap
        svc.item(snap, event.item_id, status=422)
        new_user = not snap.live.knows(event.user_id)
        ts = event.timestamp if event.timestamp is not None else svc.clock.now()
        try:
            rec, duplicate = await asyncio.to_thread(
                svc.log.append, event.user_id, event.item_id, event.event, ts, event.event_id)
        except EventLogError as e:
            raise ServiceError(503, f"the event was not recorded: {e}; retry later") from None
        svc.clock.saw(int(rec["timestamp"]))
        svc.sync()
        if not duplicate:
            svc.metrics.events.labels(event.event).inc()
        return ok({"seq": rec["seq"], "user_id": rec["user_id"], "item_id": rec["item_id"],
                   "event": rec["event"], "timestamp": rec["timestamp"],
                   "event_id": rec.get("event_id"), "duplicate": duplicate,
                   "new_user": new_user and not duplicate}, 200 if duplicate else 201)

    @app.post("/admin/reload", response_model=ReloadOut,
              responses=err(400, 401, 409, 413, 415, 422), tags=["service"])
    async def reload(body: ReloadIn,
                     key: ApiKey = None) -> Any:
        """Serve another system directory: loaded while requests go on, swapped in between
        two requests, the event log replayed into it."""
        return ok(await svc.reload(body.system_dir))

    def openapi() -> dict[str, Any]:
        """The schema, with the served dataset's ids as examples (the explicit examples a
        client, or schemathesis, starts from)."""
        if app.openapi_schema:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version,
                             description=app.description, routes=app.routes)
        ds = svc.snap.ds
        user = str(ds.user_ids[0]) if ds.n_users else "u0"
        items = [str(i) for i in ds.item_ids[:3]] or ["i0"]
        for ops in schema.get("paths", {}).values():
            for op in ops.values():
                for param in op.get("parameters", []):
                    if param.get("name") == "user_id":
                        param["example"] = user
                    elif param.get("name") == "item_id":
                        param["example"] = items[0]
        comps = schema.get("components", {}).get("schemas", {})
        for name, props in (("EventIn", {"user_id": user, "item_id": items[0]}),
                            ("SessionIn", {"user_id": user, "items": items})):
            for prop, value in props.items():
                target = comps.get(name, {}).get("properties", {}).get(prop)
                if target is not None:
                    target["examples"] = [value]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(Gate, service=svc)
    return app


def _finite(x: Any) -> float | None:
    """A float for JSON (which has no NaN or infinity: None then)."""
    x = float(x)
    return x if np.isfinite(x) else None


def _neighbours(snap: Snapshot, i: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest items to item ``i``: by the system's unit item embeddings, else by a
    content-neighbour source's table."""
    from streamrec.serve.sources import NeighboursSource

    emb = snap.system.unit_embeddings
    if emb is not None:
        cos = emb @ emb[i]
        cos[i] = -np.inf
        k = min(k, len(cos) - 1)
        top = np.argpartition(-cos, k - 1)[:k] if k < len(cos) else np.arange(len(cos))
        top = top[np.lexsort((top, -cos[top]))]
        return top, cos[top]
    for src in snap.system.sources:
        if isinstance(src, NeighboursSource):
            nbr, cos = src.neighbours[i], src.cosines[i]
            keep = nbr != i
            return nbr[keep][:k], cos[keep][:k]
    raise ServiceError(404, "this system has no item embeddings to find similar items with")


# ============================================================================ the server
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def app_from_env() -> Any:
    """The app of ``streamrec serve --workers N`` (each worker process builds its own from the
    environment the command set)."""
    _set_threads(int(os.environ.get("STREAMREC_SERVE_THREADS", "1")))
    return create_app(os.environ["STREAMREC_SERVE_SYSTEM"],
                      os.environ.get("STREAMREC_SERVE_EVENTS") or None,
                      os.environ.get(API_KEY_ENV) or None,
                      int(os.environ.get("STREAMREC_SERVE_MAX_BODY", DEFAULT_MAX_BODY)),
                      control=os.environ.get("STREAMREC_SERVE_CONTROL") or None,
                      max_batch=int(os.environ.get("STREAMREC_SERVE_MAX_BATCH",
                                                   DEFAULT_MAX_BATCH)))


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, threads))
    try:
        import faiss

        faiss.omp_set_num_threads(max(1, threads))
    except ImportError:
        pass


def run_server(system_dir: str | Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
               events: str | Path | None = None, workers: int = 1,
               max_body: int = DEFAULT_MAX_BODY, threads: int = 1, access_log: bool = False,
               console: Any = None, max_batch: int = DEFAULT_MAX_BATCH) -> None:
    """Serve a system directory over HTTP until interrupted (``streamrec serve``).

    The system is loaded (and the log replayed) before the port is opened, so a bad directory
    is an error, not a server that fails its first request. ``port`` 0 takes a free port (the
    address is printed). The API key comes from ``STREAMREC_API_KEY``.
    """
    import socket

    import uvicorn

    from streamrec.serve.system import is_system_dir

    path = Path(system_dir)
    if not path.is_dir() or not is_system_dir(path):
        raise ValueError(f"{system_dir} is not a system directory (no system.json); build one "
                          "with `streamrec system build CONFIG --out DIR` or `streamrec demo`")
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    if max_body < 1024:
        raise ValueError(f"--max-body must be at least 1024 bytes, got {max_body}")
    if max_batch < 1:
        raise ValueError(f"--max-batch must be at least 1, got {max_batch}")
    api_key = os.environ.get(API_KEY_ENV) or None
    say = console.print if console is not None else print
    if host not in LOOPBACK and api_key is None:
        say(f"warning: serving on {host} without {API_KEY_ENV}: anyone who reaches the port "
            "can record events and reload the system")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY follows
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ValueError(f"cannot listen on {host}:{port}: {e.strerror}; choose another --port "
                         "or --host") from None
    sock.set_inheritable(True)
    bound = sock.getsockname()[1]
    log = str(Path(events).resolve()) if events else str(path.resolve() / EVENTS_FILE)
    common = {"log_level": "warning", "access_log": access_log, "timeout_graceful_shutdown": 5}
    if workers == 1:
        _set_threads(threads)
        app = create_app(path, events, api_key, max_body, max_batch=max_batch)
        svc = app.state.service
        say(f"serving {path} on http://{host}:{bound} ({svc.snap.ds.n_users:,} users, "
            f"{svc.snap.ds.n_items:,} items; event log {log}: {svc.log.last_seq:,} events; "
            f"writes {'need ' + API_KEY_HEADER if api_key else 'open (no API key)'})")
        server = uvicorn.Server(uvicorn.Config(app, **common))
        try:
            server.run(sockets=[sock])
        finally:
            svc.log.close()
        return
    import tempfile

    from uvicorn.supervisors import Multiprocess

    shared = Path(tempfile.mkdtemp(prefix="streamrec-serve-"))
    (shared / "metrics").mkdir()
    control = shared / "served.json"
    control.write_text(json.dumps({"system_dir": str(path.resolve()), "generation": 0}))
    os.environ.update({"STREAMREC_SERVE_SYSTEM": str(path.resolve()),
                       "STREAMREC_SERVE_EVENTS": log,
                       "STREAMREC_SERVE_MAX_BODY": str(max_body),
                       "STREAMREC_SERVE_THREADS": str(threads),
                       "STREAMREC_SERVE_MAX_BATCH": str(max_batch),
                       "STREAMREC_SERVE_CONTROL": str(control),
                       "PROMETHEUS_MULTIPROC_DIR": str(shared / "metrics")})
    EventLog(Path(log)).close()  # create the log (and cut a torn tail) once, up front
    say(f"serving {path} on http://{host}:{bound} with {workers} worker processes (event log "
        f"{log}; writes {'need ' + API_KEY_HEADER if api_key else 'open (no API key)'})")
    config = uvicorn.Config("streamrec.serve.app:app_from_env", factory=True, workers=workers,
                            **common)
    import inspect

    kwargs: dict[str, Any] = {"sockets": [sock]}
    if "target" in inspect.signature(Multiprocess.__init__).parameters:  # uvicorn < 0.36
        kwargs["target"] = uvicorn.Server(config).run
    try:
        Multiprocess(config, **kwargs).run()
    finally:
        import shutil

        shutil.rmtree(shared, ignore_errors=True)
