"""Load benchmark of `streamrec serve` on loopback: an async httpx load generator.

The service runs in a subprocess (`streamrec serve SYSTEM --port P`, its own event log in a
temporary folder, so the system directory is not written to). Phases, each bounded in time and
in count:

* open loop at fixed rates (default 50, 100 and 200 requests/s): request i is due at
  ``start + i / rate`` whether or not earlier ones have come back, and its latency is counted
  from the moment it was due (a server that falls behind is charged for the queue it builds;
  no coordinated omission);
* closed loop at the maximum: ``--concurrency`` clients send back to back; throughput is what
  came back per second.

The generator is one asyncio process (uvloop when installed) with a minimal HTTP/1.1 keep-alive
client of its own (``--client raw``, the default): it shares the 2 cores with the server, and
httpx (``--client httpx``) spends about 2 ms of CPU per request that the server would lose.

The mix: 80% `GET /users/{id}/recommendations?k=10` for random dataset users, 20% `POST /events`
(random user, item and event type, with an idempotency key). An error is any answer that is not
2xx, or a request that failed or timed out. Results (throughput, p50 / p95 / p99, errors, and
the server's own time in the system per recommendation) go to
`benchmarks/results/service_load.json` and `.md`, one entry per `--label`, so the demo system
and the 200k-item system accumulate in one table.

    python benchmarks/service_load.py --system streamrec-demo/system --label demo
    python benchmarks/service_load.py --system benchmarks/work/system/platform200k/system \\
        --label platform200k
    python benchmarks/service_load.py --system DIR --label quick --duration 3 --no-save  # a check
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, write_result  # noqa: E402

EVENTS = ("click", "partial_view", "full_view", "save", "share")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def catalogue_ids(system: Path) -> tuple[list[str], list[str]]:
    """The original user and item ids of the system's dataset (read from its parquet files)."""
    import pyarrow.parquet as pq

    spec = json.loads((system / "system.json").read_text())
    data = spec["data"]["path"] or spec["config"]["data"]
    users = pq.read_table(Path(data) / "users.parquet", columns=["id"]).column(0).to_pylist()
    items = pq.read_table(Path(data) / "items.parquet", columns=["id"]).column(0).to_pylist()
    return [str(u) for u in users], [str(i) for i in items]


def start_server(system: Path, port: int, events: Path, workers: int, log: Path,
                 max_batch: int = 16) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("streamrec")
    cmd = [str(exe), "serve", str(system), "--port", str(port), "--events", str(events),
           "--workers", str(workers), "--max-batch", str(max_batch)]
    env = {k: v for k, v in os.environ.items() if k != "STREAMREC_API_KEY"}
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 600.0) -> None:
    import httpx

    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the server did not become ready")


class Mix:
    """The request mix: 80% recommendations, 20% events (seeded)."""

    def __init__(self, users: list[str], items: list[str], events_share: float, seed: int,
                 k: int) -> None:
        self.users, self.items = users, items
        self.share = events_share
        self.rng = random.Random(seed)
        self.k = k

    def next(self) -> tuple[str, str, dict[str, Any] | None]:
        user = self.rng.choice(self.users)
        if self.rng.random() < self.share:
            body = {"user_id": user, "item_id": self.rng.choice(self.items),
                    "event": self.rng.choice(EVENTS), "event_id": uuid.uuid4().hex}
            return "event", "/events", body
        return "recs", f"/users/{user}/recommendations?k={self.k}", None


class StaleConnection(ConnectionError):
    """A kept-alive connection the server closed while it was idle (nothing was sent back)."""


class RawClient:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams.

    The generator shares the 2 cores with the server: httpx spends about 2 ms of CPU per
    request, which the server would lose; this client spends about a tenth of that. It speaks
    just enough HTTP for this server (Content-Length bodies, keep-alive)."""

    def __init__(self, base: str, timeout: float, limit: int = 256) -> None:
        host, port = base.removeprefix("http://").rsplit(":", 1)
        self.host, self.port, self.timeout = host, int(port), timeout
        self.idle: list[tuple[Any, Any]] = []
        self.open = 0
        self.limit = limit

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None
                      ) -> tuple[int, bytes]:
        while self.idle:
            try:
                return await self._send(self.idle.pop(), method, path, body)
            except StaleConnection:
                continue  # the server closed it while idle (keep-alive timeout): next one
        return await self._send(None, method, path, body)

    async def _send(self, conn: tuple[Any, Any] | None, method: str, path: str,
                    body: dict[str, Any] | None) -> tuple[int, bytes]:
        """One request on ``conn`` (an idle keep-alive connection) or a new one. A reused
        connection that the server had closed answers nothing at all: that raises
        :class:`StaleConnection` before anything was processed, so the caller may resend
        (what every HTTP client does); any other failure is an error."""
        reused = conn is not None
        try:
            async with asyncio.timeout(self.timeout):
                if conn is None:
                    conn = await asyncio.open_connection(self.host, self.port)
                reader, writer = conn
                head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
                data = b""
                if body is not None:
                    data = json.dumps(body).encode()
                    head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                writer.write(head.encode() + b"\r\n" + data)
                try:
                    first = await reader.readline()
                except ConnectionResetError:
                    first = b""
                if not first and reused:
                    raise StaleConnection
                status = int(first.split(b" ", 2)[1])
                length, close = 0, False
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b""):
                        break
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"connection" and value.strip().lower() == b"close":
                        close = True
                payload = await reader.readexactly(length) if length else b""
        except BaseException:
            if conn is not None:
                conn[1].close()
            raise
        if close:
            conn[1].close()
        else:
            self.idle.append(conn)
        return status, payload

    async def aclose(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


class HttpxClient:
    """The same interface over httpx (``--client httpx``)."""

    def __init__(self, base: str, timeout: float, limit: int = 256) -> None:
        import httpx

        limits = httpx.Limits(max_connections=limit, max_keepalive_connections=limit)
        self.client = httpx.AsyncClient(base_url=base, timeout=timeout, limits=limits)

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None
                      ) -> tuple[int, bytes]:
        r = await self.client.request(method, path, json=body)
        return r.status_code, r.content

    async def aclose(self) -> None:
        await self.client.aclose()


CLIENTS = {"raw": RawClient, "httpx": HttpxClient}


async def one(client: Any, kind: str, path: str, body: dict[str, Any] | None, due: float,
              out: dict[str, list]) -> None:
    t_send = time.perf_counter()
    try:
        status, payload = await client.request("GET" if body is None else "POST", path, body)
        done = time.perf_counter()
        ok = 200 <= status < 300
        if not ok:
            out["errors"].append(f"HTTP {status}")
        elif kind == "recs":
            out["server_ms"].append(json.loads(payload)["timings_ms"]["total"])
    except Exception as e:  # noqa: BLE001 - every failure is counted as an error
        done = time.perf_counter()
        ok = False
        out["errors"].append(type(e).__name__)
    out["latency"].append((done - due) * 1000.0)
    out["service"].append((done - t_send) * 1000.0)
    out["kind"].append(kind)
    out["ok"].append(ok)


def summary(name: str, out: dict[str, list], seconds: float, rate: float | None,
            lag: float) -> dict[str, Any]:
    lat = np.asarray(out["latency"]) if out["latency"] else np.zeros(1)
    kinds = np.asarray(out["kind"])
    res = {
        "phase": name,
        "target_rate": rate,
        "seconds": round(seconds, 2),
        "requests": len(out["latency"]),
        "throughput": round(len(out["latency"]) / seconds, 1) if seconds else 0.0,
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p95_ms": round(float(np.percentile(lat, 95)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
        "max_ms": round(float(lat.max()), 2),
        "errors": len(out["errors"]),
        "error_kinds": {k: out["errors"].count(k) for k in sorted(set(out["errors"]))},
        "generator_max_lag_ms": round(lag * 1000.0, 2),
    }
    for kind in ("recs", "event"):
        sel = lat[kinds == kind] if len(kinds) else np.zeros(0)
        if len(sel):
            res[f"{kind}_p95_ms"] = round(float(np.percentile(sel, 95)), 2)
    if out["server_ms"]:
        s = np.asarray(out["server_ms"])
        res["system_p50_ms"] = round(float(np.percentile(s, 50)), 2)
        res["system_p95_ms"] = round(float(np.percentile(s, 95)), 2)
    return res


def new_out() -> dict[str, list]:
    return {"latency": [], "service": [], "kind": [], "ok": [], "errors": [], "server_ms": []}


async def open_loop(base: str, mix: Mix, rate: float, duration: float, max_requests: int,
                    timeout: float, kind: str = "raw") -> dict[str, Any]:
    n = min(int(rate * duration), max_requests)
    out = new_out()
    client = CLIENTS[kind](base, timeout)
    try:
        tasks = []
        t0 = time.perf_counter()
        lag = 0.0
        for i in range(n):
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                lag = max(lag, -delay)
            kind, path, body = mix.next()
            tasks.append(asyncio.create_task(one(client, kind, path, body, due, out)))
        await asyncio.gather(*tasks)
        seconds = max(time.perf_counter() - t0, n / rate)
    finally:
        await client.aclose()
    return summary(f"{rate:g} req/s", out, seconds, rate, lag)


async def closed_loop(base: str, mix: Mix, concurrency: int, duration: float,
                      max_requests: int, timeout: float, kind: str = "raw") -> dict[str, Any]:
    out = new_out()
    stop = time.perf_counter() + duration
    sent = 0
    client = CLIENTS[kind](base, timeout, concurrency)
    try:
        async def worker() -> None:
            nonlocal sent
            while time.perf_counter() < stop and sent < max_requests:
                sent += 1
                kind, path, body = mix.next()
                await one(client, kind, path, body, time.perf_counter(), out)

        t0 = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        seconds = time.perf_counter() - t0
    finally:
        await client.aclose()
    return summary(f"max ({concurrency} clients)", out, seconds, None, 0.0)


def table(results: dict[str, Any]) -> str:
    lines = ["| system | items | phase | requests | throughput (req/s) | p50 ms | p95 ms | "
             "p99 ms | errors | system p95 ms |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for label, r in results.items():
        for p in r["phases"]:
            lines.append(
                f"| {label} | {r['n_items']:,} | {p['phase']} | {p['requests']:,} | "
                f"{p['throughput']:.1f} | {p['p50_ms']:.2f} | {p['p95_ms']:.2f} | "
                f"{p['p99_ms']:.2f} | {p['errors']} | {p.get('system_p95_ms', float('nan')):.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--system", type=Path, required=True, help="system directory to serve")
    ap.add_argument("--label", default=None, help="name of the system in the results "
                    "(default: the directory's parent name)")
    ap.add_argument("--rates", default="50,100,200", help="open-loop rates, req/s")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds per phase")
    ap.add_argument("--max-requests", type=int, default=20_000, help="cap per phase")
    ap.add_argument("--concurrency", type=int, default=16, help="clients of the max phase "
                    "(0: no max phase)")
    ap.add_argument("--events-share", type=float, default=0.2)
    ap.add_argument("--workers", type=int, default=2, help="server processes (one per core)")
    ap.add_argument("--max-batch", type=int, default=16, help="the server's dynamic batching "
                    "(1: one request at a time)")
    ap.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds at 50 req/s first")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--client", choices=list(CLIENTS), default="raw",
                    help="raw: a minimal asyncio HTTP/1.1 client (light on the shared CPU); "
                    "httpx: httpx.AsyncClient")
    ap.add_argument("--no-save", action="store_true", help="print only")
    args = ap.parse_args()

    try:  # the generator's own event loop: the faster the lighter on the shared cores
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    system = args.system.resolve()
    label = args.label or system.parent.name
    users, items = catalogue_ids(system)
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    work = Path(tempfile.mkdtemp(prefix="service-load-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = work / "server.log"
    proc = start_server(system, port, work / "events.jsonl", args.workers, log, args.max_batch)
    phases = []
    try:
        t0 = time.time()
        wait_ready(base, proc)
        print(f"server ready in {time.time() - t0:.1f}s: {base} ({len(users):,} users, "
              f"{len(items):,} items)", flush=True)
        mix = Mix(users, items, args.events_share, args.seed, 10)
        if args.warmup > 0:
            asyncio.run(open_loop(base, mix, 50.0, args.warmup, 10_000, args.timeout,
                                  args.client))
        for rate in rates:
            res = asyncio.run(open_loop(base, mix, rate, args.duration, args.max_requests,
                                        args.timeout, args.client))
            print(json.dumps(res), flush=True)
            phases.append(res)
        if args.concurrency > 0:
            res = asyncio.run(closed_loop(base, mix, args.concurrency, args.duration,
                                          args.max_requests, args.timeout, args.client))
            print(json.dumps(res), flush=True)
            phases.append(res)
        import httpx

        health = httpx.get(f"{base}/health", timeout=5.0).json()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    import shutil

    shutil.rmtree(work, ignore_errors=True)  # kept (with the server's log) when a phase failed
    entry = {"system": str(system), "n_users": len(users), "n_items": len(items),
             "workers": args.workers, "max_batch": args.max_batch, "client": args.client,
             "duration_per_phase_s": args.duration,
             "max_requests_per_phase": args.max_requests, "events_share": args.events_share,
             "mix": "80% GET /users/{id}/recommendations?k=10, 20% POST /events",
             "events_logged": health["events_logged"], "phases": phases}
    results = {label: entry}
    if args.no_save:
        print(table(results))
        return
    previous = RESULTS / "service_load.json"
    if previous.is_file():
        old = json.loads(previous.read_text()).get("systems", {})
        results = {**{k: v for k, v in old.items() if k != label}, **results}
    notes = ("Loopback; the load generator (one asyncio process; client: "
             + ", ".join(sorted({f"{k}: {v.get('client', 'httpx')}" for k, v in results.items()}))
             + ") runs on the same cores as the server (workers: "
             + ", ".join(f"{k}: {v['workers']}" for k, v in results.items())
             + "). 80% GET /users/{id}/recommendations?k=10, 20% POST /events. Open-loop "
             "phases count latency from when a request was due; the max phase is closed-loop. "
             "system p95 = the server's own time in the system (retrieve -> filter -> rank -> "
             "re-rank, per batch) per recommendation.")
    write_result("service_load", {"systems": results, "notes": notes},
                 table(results) + "\n\n" + notes, history="none")


if __name__ == "__main__":
    main()
