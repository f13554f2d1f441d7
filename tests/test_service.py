"""The StreamRec service in process: every endpoint, the bad inputs, the event log, live states,
the API key, reload, and the ingest of a log into a dataset (server processes, kill -9 and the
browser: ``test_service_live.py``; the OpenAPI fuzzing: ``test_service_schema.py``)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from streamrec.cli import app as cli
from streamrec.data.dataset import load_dataset
from streamrec.serve.app import create_app
from streamrec.serve.events import EventLog, EventLogError, read_records

pytestmark = pytest.mark.usefixtures("one_thread")


def client(system: Path, tmp_path: Path, **kw) -> TestClient:
    return TestClient(create_app(system, events=tmp_path / "events.jsonl", **kw))


@pytest.fixture(scope="module")
def api(service_system, tmp_path_factory):
    """One service for the read-only tests (its own log)."""
    return client(service_system, tmp_path_factory.mktemp("api"))


@pytest.fixture(scope="module")
def ids(service_system):
    ds = load_dataset(json.loads((service_system / "system.json").read_text())["data"]["path"])
    return ds.user_ids.tolist(), ds.item_ids.tolist()


def recs(c: TestClient, user: str, k: int = 10, **params) -> dict:
    r = c.get(f"/users/{user}/recommendations", params={"k": k, **params})
    assert r.status_code == 200, r.text
    return r.json()


# ----------------------------------------------------------------------------- reads
def test_recommendations_have_the_documented_shape(api, ids):
    users, _ = ids
    out = recs(api, users[3], k=5)
    assert out["user_id"] == users[3] and out["k"] == 5 and not out["cold"]
    assert len(out["items"]) == 5
    for row in out["items"]:
        assert set(row) >= {"item_id", "score", "title", "category", "sources", "why"}
        assert row["sources"] and row["why"].startswith("proposed by")
        assert isinstance(row["category"], str) and isinstance(row["score"], float)
    assert {"source:session", "merge", "filters", "ranker", "reranker", "total"} <= set(
        out["timings_ms"])
    assert set(out["candidates"]) == {"session", "mf", "content", "popular"}
    explained = recs(api, users[3], k=3, explain="true")
    for row in explained["items"]:
        ex = row["explanation"]
        assert ex["positions"]["final"] >= 1 and len(ex["ranker"]) == 3
        assert "ranker:" in row["why"]


def test_items_similar_users_health_page_and_metrics(api, ids):
    users, items = ids
    item = api.get(f"/items/{items[7]}").json()
    assert item["item_id"] == items[7] and item["title"] and item["category"]
    assert item["available"] is True and item["interactions"] >= 0
    sim = api.get(f"/items/{items[7]}/similar", params={"k": 4}).json()
    assert len(sim["items"]) == 4 and items[7] not in [s["item_id"] for s in sim["items"]]
    cos = [s["cosine"] for s in sim["items"]]
    assert cos == sorted(cos, reverse=True)
    listed = api.get("/users", params={"limit": 5}).json()
    assert listed["users"] == users[:5] and listed["total"] == len(users)
    user = api.get(f"/users/{users[2]}", params={"recent": 3}).json()
    assert user["in_dataset"] and len(user["recent"]) == 3 and user["events"] >= 3
    health = api.get("/health").json()
    assert health["status"] == "ok" and health["items"] == len(items)
    page = api.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/recommendations" in page.text
    recs(api, users[1])
    metrics = api.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'streamrec_requests_total{method="GET",route="/users/{user_id}/recommendations"' \
           ',status="200"}' in text
    assert 'streamrec_stage_seconds_bucket{le="0.005",stage="ranker"}' in text
    assert 'streamrec_candidates_count{source="session"}' in text
    assert "streamrec_request_seconds_bucket" in text
    schema = api.get("/openapi.json").json()
    assert {"/users/{user_id}/recommendations", "/recommendations", "/events", "/items/{item_id}",
            "/items/{item_id}/similar", "/health", "/metrics", "/admin/reload"} <= set(
        schema["paths"])


def test_session_recommendations_for_anonymous_known_and_unknown_users(api, ids):
    users, items = ids
    body = {"items": [items[1], items[2], items[3]], "k": 5}
    anon = api.post("/recommendations", json=body).json()
    assert anon["cold"] and anon["user_id"] is None and len(anon["items"]) == 5
    served = {r["item_id"] for r in anon["items"]}
    assert not served & set(body["items"])  # the session's items count as consumed
    assert {s for r in anon["items"] for s in r["sources"]} <= {"session", "content", "popular"}
    known = api.post("/recommendations", json={**body, "user_id": users[4]}).json()
    assert not known["cold"] and known["user_id"] == users[4]
    stranger = api.post("/recommendations", json={**body, "user_id": "somebody-new"}).json()
    assert stranger["cold"]
    # the ad-hoc session is not recorded
    assert api.get("/users/somebody-new").status_code == 404


# ----------------------------------------------------------------------------- events
def test_an_event_is_durable_before_the_answer_and_seen_at_once(service_system, tmp_path, ids):
    users, _ = ids
    c = client(service_system, tmp_path)
    user = users[5]
    before = recs(c, user)
    top = before["items"][0]["item_id"]
    r = c.post("/events", json={"user_id": user, "item_id": top, "event": "full_view"})
    assert r.status_code == 201, r.text
    ev = r.json()
    assert ev["seq"] == 1 and not ev["duplicate"] and not ev["new_user"]
    logged = list(read_records(tmp_path / "events.jsonl"))  # on disk when the answer came
    assert [(x["user_id"], x["item_id"], x["event"]) for x in logged] == [
        (user, top, "full_view")]
    after = recs(c, user)
    assert top not in [row["item_id"] for row in after["items"]]  # consumed: filtered at once
    view = c.get(f"/users/{user}", params={"recent": 1}).json()
    assert view["recent"][0]["item_id"] == top and view["recent"][0]["logged"]
    assert view["recent"][0]["event"] == "full_view" and view["logged_events"] == 1
    # the session source reads it: the request time follows the event
    assert after["clock"] >= ev["timestamp"]


def test_a_new_user_appears_with_their_first_event(service_system, tmp_path, ids):
    _, items = ids
    c = client(service_system, tmp_path)
    assert c.get("/users/newcomer/recommendations").status_code == 404
    r = c.post("/events", json={"user_id": "newcomer", "item_id": items[10], "event": "save",
                                "timestamp": 1_800_000_000})
    assert r.status_code == 201 and r.json()["new_user"]
    out = recs(c, "newcomer")
    assert out["cold"] and out["items"]
    assert items[10] not in [row["item_id"] for row in out["items"]]
    used = {s for row in out["items"] for s in row["sources"]}
    assert used & {"session", "content"} and "mf" not in used
    assert "newcomer" in c.get("/users").json()["new_users"]
    assert out["clock"] >= 1_800_000_000  # an explicit later timestamp moves the clock


def test_an_event_id_is_logged_once(service_system, tmp_path, ids):
    users, items = ids
    c = client(service_system, tmp_path)
    body = {"user_id": users[0], "item_id": items[0], "event": "click", "event_id": "abc-1"}
    first = c.post("/events", json=body)
    again = c.post("/events", json={**body, "event": "share"})
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["duplicate"] and again.json()["seq"] == first.json()["seq"]
    assert again.json()["event"] == "click"  # the logged one
    assert len(list(read_records(tmp_path / "events.jsonl"))) == 1
    assert c.get(f"/users/{users[0]}").json()["logged_events"] == 1


def test_a_failed_write_is_a_503_and_leaves_no_trace(service_system, tmp_path, ids,
                                                     monkeypatch):
    users, items = ids
    c = client(service_system, tmp_path)
    c.post("/events", json={"user_id": users[1], "item_id": items[1], "event": "click"})
    size = (tmp_path / "events.jsonl").stat().st_size
    import streamrec.serve.events as events

    def broken(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(events.os, "fsync", broken)
    r = c.post("/events", json={"user_id": users[1], "item_id": items[2], "event": "click"})
    assert r.status_code == 503 and "not recorded" in r.json()["error"]
    monkeypatch.undo()
    assert (tmp_path / "events.jsonl").stat().st_size == size
    view = c.get(f"/users/{users[1]}").json()
    assert view["logged_events"] == 1
    r = c.post("/events", json={"user_id": users[1], "item_id": items[3], "event": "click"})
    assert r.json()["seq"] == 2  # the failed event took no sequence number


def test_a_restart_replays_the_log(service_system, tmp_path, ids):
    users, items = ids
    c = client(service_system, tmp_path)
    for j in range(4):
        c.post("/events", json={"user_id": users[8], "item_id": items[20 + j], "event": "click"})
    c.post("/events", json={"user_id": "fresh", "item_id": items[30], "event": "share"})
    again = client(service_system, tmp_path)  # a new process on the same log
    assert again.get("/health").json()["events_logged"] == 5
    view = again.get(f"/users/{users[8]}", params={"recent": 4}).json()
    assert view["logged_events"] == 4
    assert [r["item_id"] for r in view["recent"]] == items[20:24][::-1]
    assert again.get("/users/fresh").json()["logged_events"] == 1
    served = {r["item_id"] for r in recs(again, users[8], k=30)["items"]}
    assert not served & set(items[20:24])


# ----------------------------------------------------------------------------- errors
BAD = [
    ("get", "/users/{u}/recommendations?k=0", None, 422, "query parameter k"),
    ("get", "/users/{u}/recommendations?k=101", None, 422, "less than or equal to 100"),
    ("get", "/users/{u}/recommendations?k=ten", None, 422, "valid integer"),
    ("get", "/users/{u}/recommendations?explain=maybe", None, 422, "explain"),
    ("get", "/users/nobody/recommendations", None, 404, "unknown user id 'nobody'"),
    ("get", "/users/nobody", None, 404, "unknown user id"),
    ("get", "/items/nothing", None, 404, "unknown item id 'nothing'"),
    ("get", "/items/nothing/similar", None, 404, "unknown item id"),
    ("get", "/items/{i}/similar?k=-3", None, 422, "query parameter k"),
    ("get", "/users?limit=0", None, 422, "limit"),
    ("get", "/nowhere", None, 404, "no such endpoint"),
    ("delete", "/events", None, 405, "not allowed"),
    ("post", "/events", b"{not json", 400, "malformed JSON"),
    ("post", "/events", b"", 422, "body: required"),
    ("post", "/events", b"[1, 2]", 422, "valid dictionary"),
    ("post", "/events", {"user_id": 7, "item_id": "{i}", "event": "click"}, 422,
     "body.user_id: Input should be a valid string"),
    ("post", "/events", {"user_id": "{u}", "item_id": "{i}", "event": "like"}, 422,
     "body.event"),
    ("post", "/events", {"user_id": "{u}", "event": "click"}, 422, "body.item_id: required"),
    ("post", "/events", {"user_id": "{u}", "item_id": "zzz", "event": "click"}, 422,
     "unknown item id 'zzz'"),
    ("post", "/events", {"user_id": "{u}", "item_id": "{i}", "event": "click", "rating": 5},
     422, "body.rating: not a known field"),
    ("post", "/events", {"user_id": "{u}", "item_id": "{i}", "event": "click",
                         "timestamp": "1700000000"}, 422, "body.timestamp"),
    ("post", "/events", {"user_id": "{u}", "item_id": "{i}", "event": "click",
                         "timestamp": -5}, 422, "body.timestamp"),
    ("post", "/events", {"user_id": "a b", "item_id": "{i}", "event": "click"}, 422,
     "body.user_id"),
    ("post", "/events", {"user_id": "x" * 200, "item_id": "{i}", "event": "click"}, 422,
     "body.user_id"),
    ("post", "/recommendations", {"items": []}, 422, "body.items"),
    ("post", "/recommendations", {"items": ["{i}"] * 201}, 422, "body.items"),
    ("post", "/recommendations", {"items": ["{i}", "nope"]}, 422, "unknown item id(s) 'nope'"),
    ("post", "/recommendations", {"items": ["{i}"], "k": 1000}, 422, "body.k"),
    ("post", "/recommendations", {"items": "{i}"}, 422, "body.items"),
    ("post", "/admin/reload", {"system_dir": "/nonexistent/system"}, 422,
     "not a system directory"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "words"), BAD,
                         ids=[f"{m} {p} {s}" for m, p, _, s, _ in BAD])
def test_bad_inputs_are_json_4xx_errors(api, ids, method, path, body, status, words):
    users, items = ids

    def fill(x):
        if isinstance(x, str):
            return x.replace("{u}", users[0]).replace("{i}", items[0])
        if isinstance(x, list):
            return [fill(v) for v in x]
        if isinstance(x, dict):
            return {k: fill(v) for k, v in x.items()}
        return x

    kw = {}
    if isinstance(body, bytes):
        kw = {"content": body, "headers": {"content-type": "application/json"}}
    elif body is not None:
        kw = {"json": fill(body)}
    r = getattr(api, method)(fill(path), **kw)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()
    assert list(err) == ["error"] and words in err["error"], err
    assert "\n" not in err["error"]


def test_body_limits_and_content_type(service_system, tmp_path, ids):
    users, items = ids
    c = client(service_system, tmp_path, max_body=2048)
    event = {"user_id": users[0], "item_id": items[0], "event": "click"}
    r = c.post("/events", content=json.dumps({**event, "pad": "x" * 4000}),
               headers={"content-type": "application/json"})
    assert r.status_code == 413 and "too large" in r.json()["error"]

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(10):
            yield b" " * 512

    r = c.post("/events", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    r = c.post("/events", content="user_id=u", headers={"content-type": "text/plain"})
    assert r.status_code == 415 and "application/json" in r.json()["error"]
    assert not (tmp_path / "events.jsonl").read_bytes()


def test_writes_need_the_api_key_when_one_is_set(service_system, tmp_path, ids):
    users, items = ids
    c = client(service_system, tmp_path, api_key="s3cret")
    event = {"user_id": users[0], "item_id": items[0], "event": "click"}
    r = c.post("/events", json=event)
    assert r.status_code == 401 and "X-API-Key" in r.json()["error"]
    r = c.post("/events", json=event, headers={"X-API-Key": "wrong"})
    assert r.status_code == 401 and "wrong" in r.json()["error"]
    # checked before the body is read: a bad body without the key is still a 401
    assert c.post("/events", content=b"{bad").status_code == 401
    assert c.post("/admin/reload", json={"system_dir": "x"}).status_code == 401
    r = c.post("/events", json=event, headers={"X-API-Key": "s3cret"})
    assert r.status_code == 201
    assert c.get(f"/users/{users[0]}/recommendations").status_code == 200  # reads: open
    assert c.post("/recommendations", json={"items": [items[0]]}).status_code == 200
    assert c.get("/health").json()["writes_need_key"]


# ----------------------------------------------------------------------------- reload
def test_reload_swaps_the_system_while_requests_go_on(service_system, tmp_path, ids):
    import shutil

    import httpx

    users, items = ids
    other = tmp_path / "system-b"
    shutil.copytree(service_system, other)
    app = create_app(service_system, events=tmp_path / "events.jsonl")

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            await c.post("/events", json={"user_id": "early", "item_id": items[5],
                                          "event": "click"})
            reload = asyncio.create_task(c.post("/admin/reload",
                                                json={"system_dir": str(other)}))
            answers = []
            while not reload.done():
                r = await c.get(f"/users/{users[len(answers) % 50]}/recommendations")
                answers.append((r.status_code, r.json().get("generation")))
                await asyncio.sleep(0)
            done = await reload
            after = await c.get("/users/early/recommendations")
            busy = await c.get("/health")
            return answers, done, after, busy

    answers, done, after, health = asyncio.run(scenario())
    assert done.status_code == 200, done.text
    assert done.json()["generation"] == 1 and done.json()["system_dir"] == str(other.resolve())
    assert answers and all(code == 200 for code, _ in answers)  # no request dropped
    assert {g for _, g in answers} <= {0, 1}
    assert after.status_code == 200 and after.json()["generation"] == 1  # events replayed
    assert health.json()["system_dir"] == str(other.resolve())


# ----------------------------------------------------------------------------- the log
def test_a_torn_last_line_is_cut_and_never_read(tmp_path):
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    log.append("u1", "i1", "click", 10)
    log.append("u1", "i2", "save", 11)
    log.close()
    with open(path, "ab") as f:  # a writer killed in the middle of a line
        f.write(b'{"seq":3,"user_id":"u1","item_id":"i3","ev')
    assert [r["seq"] for r in read_records(path)] == [1, 2]
    log = EventLog(path)  # the next writer cuts it off
    assert log.torn == 1 and path.read_bytes().endswith(b"\n")
    rec, dup = log.append("u2", "i4", "share", 12)
    assert rec["seq"] == 3 and not dup
    lines = path.read_bytes().splitlines()
    assert len(lines) == 3 and all(json.loads(line)["seq"] == j + 1
                                   for j, line in enumerate(lines))


def test_a_damaged_line_is_skipped_and_counted(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"seq":1,"user_id":"u","item_id":"i","event":"click","timestamp":1}\n'
                    'garbage\n'
                    '{"seq":2,"user_id":"u","item_id":"i","event":"dance","timestamp":1}\n')
    log = EventLog(path)
    assert [r["seq"] for r in log.read_new()] == [1] and log.skipped == 2
    assert log.append("u", "i", "click", 2)[0]["seq"] == 3


def test_processes_sharing_a_log_share_one_sequence(tmp_path):
    """Two writers on one file (as two server processes): numbers never collide, keys are
    known to both, and each reads what the other wrote."""
    path = tmp_path / "events.jsonl"
    a, b = EventLog(path), EventLog(path)
    seqs = []
    for j in range(6):
        w = a if j % 2 == 0 else b
        seqs.append(w.append("u", f"i{j}", "click", j, event_id=f"k{j}")[0]["seq"])
    assert seqs == [1, 2, 3, 4, 5, 6]
    rec, dup = a.append("u", "i9", "click", 9, event_id="k1")  # b logged k1
    assert dup and rec["seq"] == 2
    assert [r["seq"] for r in b.read_new()] == [1, 2, 3, 4, 5, 6]
    assert len(path.read_bytes().splitlines()) == 6


def test_an_unwritable_log_is_a_clear_error(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    os.chmod(folder, 0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        with pytest.raises(EventLogError, match="cannot open the event log"):
            EventLog(folder / "events.jsonl")
    finally:
        os.chmod(folder, 0o700)


# ----------------------------------------------------------------------------- ingest
def test_ingest_events_folds_the_log_into_a_dataset_that_trains(service_system, tmp_path,
                                                                ids):
    from streamrec.run import train_run

    users, items = ids
    c = client(service_system, tmp_path)
    events = [(users[0], items[50], "share"), ("brand-new", items[51], "click"),
              ("brand-new", items[52], "full_view"), (users[1], items[53], "save")]
    for u, i, e in events:
        assert c.post("/events", json={"user_id": u, "item_id": i, "event": e}).status_code == 201
    import shutil

    data = tmp_path / "data"
    shutil.copytree(json.loads((service_system / "system.json").read_text())["data"]["path"],
                    data)
    (data / "truth").mkdir()
    (data / "truth" / "world.json").write_text("{}")
    before = load_dataset(data)
    runner = CliRunner()
    res = runner.invoke(cli, ["data", "ingest-events", str(tmp_path / "events.jsonl"),
                              "--into", str(data), "--out", str(tmp_path / "folded"), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["events_added"] == 4 and summary["new_users"] == 1
    ds = load_dataset(tmp_path / "folded")
    assert ds.n_users == before.n_users + 1 and ds.user_ids[-1] == "brand-new"
    assert ds.n_interactions == before.n_interactions + 4
    new = ds.user == ds.n_users - 1
    assert sorted(ds.item_ids[ds.item[new]].tolist()) == [items[51], items[52]]
    assert ds.inter["engagement"][-4:].tolist() == [4, 0, 2, 3]
    assert ds.inter["session"][-4:].min() > before.inter["session"].max()
    assert ds.users["signup_ts"][-1] == ds.timestamp[new].min()
    assert ds.meta["event_log"]["through_seq"] == 4
    assert (tmp_path / "folded" / "truth" / "world.json").is_file()  # other files are kept
    assert load_dataset(data).n_interactions == before.n_interactions  # --out: untouched
    # folding again adds nothing; a newer event is added
    res = runner.invoke(cli, ["data", "ingest-events", str(tmp_path / "events.jsonl"),
                              "--into", str(tmp_path / "folded"), "--json"])
    assert json.loads(res.stdout)["events_added"] == 0
    c.post("/events", json={"user_id": "brand-new", "item_id": items[54], "event": "click"})
    res = runner.invoke(cli, ["data", "ingest-events", str(tmp_path / "events.jsonl"),
                              "--into", str(tmp_path / "folded")])
    assert res.exit_code == 0 and "folded 1 events" in res.output
    assert load_dataset(tmp_path / "folded").n_interactions == before.n_interactions + 5
    assert (tmp_path / "folded" / "truth" / "world.json").is_file()  # in place: kept too
    run = train_run("mf", tmp_path / "folded", tmp_path / "mf",
                    overrides=["epochs=1", "dim=8"], progress=False)
    assert np.isfinite(run.results["test"]["metrics"]["ndcg@10"])
    assert run.dataset.n_users == before.n_users + 1


def test_ingest_and_serve_errors_are_one_line(tmp_path, service_system):
    runner = CliRunner()
    res = runner.invoke(cli, ["data", "ingest-events", str(tmp_path / "none.jsonl"), "--into",
                              str(tmp_path)])
    assert res.exit_code == 1 and "does not exist" in res.output
    log = tmp_path / "events.jsonl"
    EventLog(log).append("u", "not-an-item", "click", 1)
    data = json.loads((service_system / "system.json").read_text())["data"]["path"]
    res = runner.invoke(cli, ["data", "ingest-events", str(log), "--into", data,
                              "--out", str(tmp_path / "x")])
    assert res.exit_code == 1 and "not in dataset" in res.output
    res = runner.invoke(cli, ["serve", str(tmp_path)])
    assert res.exit_code == 1 and "not a system directory" in res.output
    res = runner.invoke(cli, ["serve", str(service_system), "--port", "70000"])
    assert res.exit_code == 1 and "--port" in res.output
    res = runner.invoke(cli, ["serve", str(service_system), "--max-batch", "0"])
    assert res.exit_code == 1 and "--max-batch must be at least 1" in res.output
    for out in (res.output,):
        assert len([line for line in out.splitlines() if line.strip()]) == 1


def test_readers_stop_at_a_write_not_yet_synced(tmp_path):
    """This process's own write is applied only once it is on disk (an event whose fsync
    fails is cut off again, and must never have been applied)."""
    log = EventLog(tmp_path / "events.jsonl")
    log.append("u", "i", "click", 1)
    start = log.size
    log._inflight = start  # a write under way: its bytes may already be visible
    os.write(log._fd, b'{"seq":2,"user_id":"u","item_id":"j","event":"click","timestamp":2}\n')
    assert [r["seq"] for r in log.read_new()] == [1]
    log._inflight = None  # synced
    assert [r["seq"] for r in log.read_new()] == [2]


def test_an_event_already_in_the_history_is_not_applied_twice(service_system):
    """A log folded into the dataset, and the system rebuilt from it: replaying the log over
    the new system does not add the folded events a second time."""
    from streamrec.serve.app import load_snapshot

    snap = load_snapshot(service_system)
    ds, live = snap.ds, snap.live
    u = 3
    state = live.index.state(u)
    old = {"seq": 1, "user_id": str(ds.user_ids[u]), "item_id": str(ds.item_ids[state.items[0]]),
           "event": "click", "timestamp": int(state.timestamps[0])}
    new = {**old, "seq": 2, "timestamp": int(state.timestamps[-1]) + 10}
    assert live.apply([old, new]) == 1 and live.repeated == 1
    assert live.state(str(ds.user_ids[u])).n_events == state.n_events + 1
    assert live.apply([old, new]) == 0  # by sequence number: seen


def test_requests_that_arrive_together_are_served_in_one_batch(service_system, tmp_path, ids):
    import httpx

    users, _ = ids
    app = create_app(service_system, events=tmp_path / "events.jsonl")

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            together = await asyncio.gather(*[
                c.get(f"/users/{u}/recommendations", params={"k": 8}) for u in users[:6]])
            alone = [await c.get(f"/users/{u}/recommendations", params={"k": 8})
                     for u in users[:6]]
            return [r.json() for r in together], [r.json() for r in alone]

    together, alone = asyncio.run(scenario())
    assert max(r["batch"] for r in together) > 1 and all(r["batch"] == 1 for r in alone)
    for a, b in zip(together, alone):  # a batch serves each user as alone
        assert [x["item_id"] for x in a["items"]] == [x["item_id"] for x in b["items"]]
        assert np.allclose([x["score"] for x in a["items"]], [x["score"] for x in b["items"]],
                           atol=1e-4)
    assert "streamrec_batch_size_bucket" in TestClient(app).get("/metrics").text
