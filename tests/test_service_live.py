"""The service as it runs: `streamrec serve` in a subprocess killed with SIGKILL while events
are posted, worker processes sharing one log, and the page in a real headless browser
(Debian's chromium driven by Playwright). Servers listen on 127.0.0.1, on a free port; every
load loop is bounded in count and time."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from streamrec.data.dataset import load_dataset
from streamrec.serve.events import read_records

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(system: Path, log: Path, *extra: str, env: dict | None = None):
    """`streamrec serve` in a subprocess (its own process group); yields (process, base URL)
    once /health answers."""
    port = free_port()
    cmd = [sys.executable, "-m", "streamrec.cli", "serve", str(system), "--port", str(port),
           "--events", str(log), *extra]
    environ = {**{k: v for k, v in os.environ.items() if k != "STREAMREC_API_KEY"},
               "OMP_NUM_THREADS": "1", **(env or {})}
    out = log.with_suffix(f".{port}.out")
    proc = subprocess.Popen(cmd, stdout=out.open("w"), stderr=subprocess.STDOUT, env=environ,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"server exited: {out.read_text()}")
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.time() < deadline, f"server not ready: {out.read_text()}"
            time.sleep(0.1)
        yield proc, base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(scope="module")
def ids(service_system):
    ds = load_dataset(json.loads((service_system / "system.json").read_text())["data"]["path"])
    return ds.user_ids.tolist(), ds.item_ids.tolist()


# ----------------------------------------------------------------------------- kill -9
def test_kill_9_under_load_loses_no_acknowledged_event(service_system, tmp_path, ids):
    users, items = ids
    log = tmp_path / "events.jsonl"
    attempted: dict[str, dict] = {}
    acked: set[str] = set()
    stop = threading.Event()

    def client(n: int) -> None:
        with httpx.Client(timeout=5) as c:
            for j in range(150):  # bounded in count, and stopped at the kill
                if stop.is_set():
                    return
                body = {"user_id": users[(7 * n + j) % 15] if j % 4 else f"new-{n}",
                        "item_id": items[(13 * n + 5 * j) % len(items)],
                        "event": ["click", "full_view", "save"][j % 3],
                        "event_id": f"c{n}-{j}"}
                attempted[body["event_id"]] = body
                try:
                    r = c.post(f"{base}/events", json=body)
                except httpx.HTTPError:
                    continue
                if r.status_code == 201:
                    acked.add(body["event_id"])

    with server(service_system, log) as (proc, base):
        threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        deadline = time.time() + 20
        while len(acked) < 80 and time.time() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)  # under load: posts are in flight
        proc.wait()
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert len(acked) >= 20, "too few events were acknowledged before the kill"
    assert len(attempted) > len(acked) or len(acked) == 900

    with server(service_system, log) as (_, base):
        raw = log.read_bytes()
        lines = raw.splitlines()
        records = list(read_records(log))
        assert raw.endswith(b"\n") and len(records) == len(lines)  # nothing half-written
        seqs = [r["seq"] for r in records]
        assert seqs == list(range(1, len(seqs) + 1))
        logged = Counter(r["event_id"] for r in records)
        assert max(logged.values()) == 1  # none duplicated
        assert acked <= set(logged)  # every acknowledged event survived
        # the client retries what it did not see acknowledged: logged once, at most
        with httpx.Client(base_url=base, timeout=5) as c:
            for eid in sorted(set(attempted) - acked):
                r = c.post("/events", json=attempted[eid])
                assert r.status_code in (200, 201), r.text
                assert r.json()["duplicate"] == (eid in logged)
            records = list(read_records(log))
            final = Counter(r["event_id"] for r in records)
            assert set(final) == set(attempted) and max(final.values()) == 1
            # and the recommendations reflect them: every logged item is consumed
            by_user: dict[str, set[str]] = {}
            for r in records:
                by_user.setdefault(r["user_id"], set()).add(r["item_id"])
            for user, consumed in sorted(by_user.items())[:8]:
                view = c.get(f"/users/{user}", params={"recent": 0}).json()
                assert view["logged_events"] == sum(1 for r in records if r["user_id"] == user)
                out = c.get(f"/users/{user}/recommendations", params={"k": 50}).json()
                assert out["items"] and not consumed & {x["item_id"] for x in out["items"]}


# ----------------------------------------------------------------------------- workers
def test_worker_processes_share_the_log_and_follow_a_reload(service_system, tmp_path, ids):
    users, items = ids
    other = tmp_path / "system-b"
    shutil.copytree(service_system, other)
    log = tmp_path / "events.jsonl"
    with server(service_system, log, "--workers", "2") as (_, base):
        for j in range(6):  # a new connection each: any worker takes it
            r = httpx.post(f"{base}/events", json={"user_id": "shared", "item_id": items[j],
                                                   "event": "click"}, timeout=10)
            assert r.status_code == 201 and r.json()["seq"] == j + 1
        pids = set()
        for _ in range(40):
            health = httpx.get(f"{base}/health", timeout=10).json()
            pids.add(health["pid"])
            view = httpx.get(f"{base}/users/shared", timeout=10).json()
            assert view["logged_events"] == 6  # whichever worker answers, it has them all
            if len(pids) == 2:
                break
        assert len(pids) == 2, "the second worker never answered"
        r = httpx.post(f"{base}/admin/reload", json={"system_dir": str(other)}, timeout=60)
        assert r.status_code == 200 and r.json()["generation"] == 1
        seen: dict[int, int] = {}
        deadline = time.time() + 60
        while time.time() < deadline:
            health = httpx.get(f"{base}/health", timeout=10).json()
            seen[health["pid"]] = health["generation"]
            if len(seen) == 2 and set(seen.values()) == {1}:
                break
            time.sleep(0.05)
        assert set(seen.values()) == {1} and len(seen) == 2, seen
        assert httpx.get(f"{base}/users/shared", timeout=10).json()["logged_events"] == 6
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
        assert 'streamrec_requests_total{method="POST",route="/events",status="201"} 6.0' \
            in metrics  # counted across the workers


# ----------------------------------------------------------------------------- the page
@contextlib.contextmanager
def server_in_thread(app):
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started:
        assert time.time() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_the_page_in_a_real_browser(service_system, tmp_path, ids):
    if not Path(CHROMIUM).exists():
        if os.environ.get("STREAMREC_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    import torch

    from streamrec.serve.app import create_app

    torch.set_num_threads(1)
    users, _ = ids
    user = users[3]
    app = create_app(service_system, events=tmp_path / "events.jsonl")
    with server_in_thread(app) as base, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{base}/?user={user}")
            page.wait_for_selector(".card", timeout=20_000)
            cards = page.locator(".card")
            assert cards.count() == 10
            first = cards.nth(0)
            item = first.get_attribute("data-item")
            text = first.inner_text()
            assert "proposed by" in text  # sources and why on the card
            assert page.locator("#timings tr").count() >= 6  # stage latencies
            assert page.locator("#candidates tr").count() == 4
            assert page.locator("#recent li").count() >= 1
            ready = page.evaluate("document.body.dataset.ready")
            first.click()  # records an event; the lists update
            page.wait_for_function(f"document.body.dataset.ready !== '{ready}'",
                                   timeout=20_000)
            served = [c.get_attribute("data-item") for c in page.locator(".card").all()]
            assert item not in served  # consumed: it left the recommendations
            recent = page.locator("#recent li").first
            assert "live" in recent.inner_html() and "full_view" in recent.inner_text()
            assert "recorded full_view" in page.locator("#status").inner_text()
            assert app.state.service.snap.live.logged[user][-1][1] >= 0  # logged by the server
            # another user, typed in, and an error shown on the page rather than thrown
            page.fill("#user", "nobody-at-all")
            page.press("#user", "Enter")
            page.wait_for_selector("#status.error", timeout=20_000)
            assert "unknown user id" in page.locator("#status").inner_text()
            page.fill("#user", user)
            page.press("#user", "Enter")
            page.wait_for_selector("#status:not(.error)", timeout=20_000)
            page.screenshot(path=str(tmp_path / "serving.png"), full_page=True)
            assert (tmp_path / "serving.png").stat().st_size > 10_000
            assert not errors, errors
        finally:
            browser.close()
    assert len(list(read_records(tmp_path / "events.jsonl"))) == 1
