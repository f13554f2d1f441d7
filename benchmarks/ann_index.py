"""Benchmark M5: the ANN index — top-100 latency and recall against exact search (issue 6).

Protocol
--------
Vectors (128-d, L2-normalised; inner product = cosine):

* ``20k``: the item vectors of the two-tower MiniLM model trained on the ``m5`` world by
  ``benchmarks/two_tower.py`` (20,000 items); queries: the user-tower vectors of 2,000 random
  users of that world (history = their train + validation items).
* ``200k``: the 200,000 items of the ``platform`` world (seed 0; the same items as the
  ``platform`` preset: same item config and seed, fewer users). Encoding 200k texts with
  MiniLM on one CPU thread takes far too long here, so the item tower is a two-tower with
  **the text CNN** (``text_encoder=cnn``, 32 filters, 32-d tokens, 48 tokens), trained for
  one epoch on the interactions of 12,500 simulated users of that catalogue (~500k
  interactions); items without interactions are embedded from their text and category with
  the shared unknown-id row. Queries: 2,000 of those users' tower vectors.

Indexes (FAISS, inner product, one OpenMP thread): ``flat`` (exact; the reference), ``hnsw``
(``M``, ``efConstruction``, several ``efSearch``), ``ivf`` (``nlist = 4 sqrt(n)``, several
``nprobe``). For each: build seconds; recall@100 = mean |ANN top-100 ∩ exact top-100| / 100
over the queries (no filtering of seen items, so both lists rank the same candidates);
latency of a single-query search (``search(q[1, d], 100)``, p50 / p99 over 2,000 queries,
after 100 warm-up queries) and of batched search (256 queries per call: p50 / p99 per call
and the amortised microseconds per query). Wall clock on a 2-core machine shared with other
work (load average recorded); targets: top-100 over 200k items < 1 ms p99 at recall >= 0.95.

    OMP_NUM_THREADS=1 python benchmarks/ann_index.py [--sizes 20k,200k]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_result  # noqa: E402

ROOT = Path(__file__).resolve().parent
WORK = ROOT / "work" / "two_tower"
ANN = WORK / "ann"
K = 100
N_QUERIES = 2_000
BATCH = 256
GRID: list[dict[str, Any]] = [
    {"kind": "flat"},
    *[{"kind": "hnsw", "hnsw_m": 32, "ef_construction": 200, "ef_search": ef}
      for ef in (100, 128, 200, 400)],
    *[{"kind": "hnsw", "hnsw_m": 16, "ef_construction": 100, "ef_search": ef}
      for ef in (128, 256)],
    *[{"kind": "hnsw", "hnsw_m": 64, "ef_construction": 400, "ef_search": ef}
      for ef in (400, 800)],
    *[{"kind": "ivf", "nprobe": p} for p in (8, 16, 32, 64)],
]  # fmt: skip


def vectors_20k() -> tuple[np.ndarray, np.ndarray, str]:
    f = ANN / "m5.npz"
    if not f.is_file():
        from streamrec.run import load_run
        from streamrec.serve.embeddings import item_matrix, user_matrix

        run_dir = WORK / "runs" / "m5-two-tower_MiniLM"
        run = load_run(run_dir)
        items = item_matrix(run.model)
        users = np.random.default_rng(0).choice(run.dataset.n_users, N_QUERIES, replace=False)
        queries = user_matrix(run.model, users, run.split.history(run.dataset, "test"))
        ANN.mkdir(parents=True, exist_ok=True)
        np.savez(f, items=items, queries=queries)
    z = np.load(f)
    return z["items"], z["queries"], "two-tower MiniLM item tower, m5 world (20,000 items)"


def vectors_200k() -> tuple[np.ndarray, np.ndarray, str]:
    f = ANN / "platform.npz"
    note = ("two-tower CNN item tower (1 epoch on 12,500 users / ~500k interactions) applied to "
            "the 200,000 platform items' texts + categories")  # fmt: skip
    if not f.is_file():
        import torch

        from streamrec.data.world import PRESETS, make_world
        from streamrec.models.two_tower import TwoTower, TwoTowerConfig
        from streamrec.serve.embeddings import item_matrix, user_matrix
        from streamrec.train import TrainConfig, Trainer

        cfg = dataclasses.replace(
            PRESETS["platform"], name="platform-items", n_users=12_500, n_interactions=500_000,
            n_impressions=2_000, pilot_impressions=2_000,
        )  # fmt: skip
        t0 = time.perf_counter()
        ds = make_world(cfg, seed=0)
        print(f"world: {ds.n_users} users, {ds.n_items} items, {ds.n_interactions} "
              f"interactions in {time.perf_counter() - t0:.0f}s", flush=True)  # fmt: skip
        torch.manual_seed(0)
        model = TwoTower(
            TwoTowerConfig(text_encoder="cnn", cnn_filters=32, cnn_token_dim=32, cnn_max_len=48),
            ds,
        )
        t0 = time.perf_counter()
        Trainer(model, ds, TrainConfig(epochs=1, batch_size=1024, lr=1e-3, threads=1,
                                       progress=False), None).fit()  # fmt: skip
        print(f"trained in {time.perf_counter() - t0:.0f}s", flush=True)
        t0 = time.perf_counter()
        items = item_matrix(model)
        users = np.random.default_rng(0).choice(ds.n_users, N_QUERIES, replace=False)
        queries = user_matrix(model, users, ds)
        print(f"item tower on 200k items in {time.perf_counter() - t0:.0f}s", flush=True)
        ANN.mkdir(parents=True, exist_ok=True)
        np.savez(f, items=items, queries=queries)
    z = np.load(f)
    return z["items"], z["queries"], note


_BUILT: dict[tuple, tuple[Any, float]] = {}


def measure(items: np.ndarray, queries: np.ndarray, exact: np.ndarray, p: dict) -> dict:
    """Build (or reuse: only efSearch / nprobe differ) an index and time its searches."""
    from streamrec.serve.index import IndexParams, ItemIndex, recall_against_exact

    params = IndexParams(**p)
    key = (len(items), params.kind, params.hnsw_m, params.ef_construction, params.nlist)
    if key not in _BUILT:
        t0 = time.perf_counter()
        _BUILT.clear()
        _BUILT[key] = (ItemIndex.build(items, params), time.perf_counter() - t0)
    idx, build = _BUILT[key]
    idx.set_search_params(params.ef_search, params.nprobe)
    index = idx.index
    q = np.ascontiguousarray(queries, dtype=np.float32)
    for i in range(100):  # warm-up
        index.search(q[i : i + 1], K)
    single = np.empty(len(q))
    found = np.empty((len(q), K), dtype=np.int64)
    for i in range(len(q)):
        t = time.perf_counter()
        _, ids = index.search(q[i : i + 1], K)
        single[i] = time.perf_counter() - t
        found[i] = ids[0]
    batched = []
    for _ in range(3):
        for s in range(0, len(q) - BATCH + 1, BATCH):
            t = time.perf_counter()
            index.search(q[s : s + BATCH], K)
            batched.append(time.perf_counter() - t)
    batched = np.array(batched)
    return {
        "params": params.to_dict() | ({"nlist": index.nlist} if p["kind"] == "ivf" else {}),
        "build_seconds": build,
        "recall@100": recall_against_exact(found, exact),
        "single_ms_p50": float(np.percentile(single, 50) * 1e3),
        "single_ms_p99": float(np.percentile(single, 99) * 1e3),
        "batch_ms_p50": float(np.percentile(batched, 50) * 1e3),
        "batch_ms_p99": float(np.percentile(batched, 99) * 1e3),
        "batched_us_per_query": float(batched.mean() / BATCH * 1e6),
        "loadavg": os.getloadavg(),
    }


def label(p: dict) -> str:
    if p["kind"] == "hnsw":
        return f"hnsw M={p['hnsw_m']} efC={p['ef_construction']} efS={p['ef_search']}"
    if p["kind"] == "ivf":
        return f"ivf nlist={p['nlist']} nprobe={p['nprobe']}"
    return "flat (exact)"


def main() -> None:
    import faiss

    from streamrec.serve.index import IndexParams, exact_top_k

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="20k,200k")
    args = ap.parse_args()
    faiss.omp_set_num_threads(1)
    sources = {"20k": vectors_20k, "200k": vectors_200k}
    out_file = ANN / "results.json"
    results = json.loads(out_file.read_text()) if out_file.is_file() else {}
    for size in args.sizes.split(","):
        items, queries, note = sources[size]()
        exact = exact_top_k(items, queries, K)
        done = {json.dumps(r["params"] | {"nlist": None}, sort_keys=True): r
                for r in results.get(size, {}).get("rows", [])}  # fmt: skip
        rows = []
        for p in GRID:
            key = json.dumps(IndexParams(**p).to_dict() | {"nlist": None}, sort_keys=True)
            if key in done:  # measured by an earlier call
                rows.append(done[key])
                continue
            row = measure(items, queries, exact, p)
            rows.append(row)
            print(f"{size} {label(row['params'])}: recall {row['recall@100']:.4f} "
                  f"single p50 {row['single_ms_p50']:.3f} p99 {row['single_ms_p99']:.3f} ms, "
                  f"batch {row['batched_us_per_query']:.1f} us/q, build "
                  f"{row['build_seconds']:.1f}s", flush=True)  # fmt: skip
        results[size] = {"n_items": len(items), "n_queries": len(queries), "dim": items.shape[1],
                         "vectors": note, "rows": rows}  # fmt: skip
        ANN.mkdir(parents=True, exist_ok=True)
        out_file.write_text(json.dumps(results, indent=2))
    lines = ["# ANN index: top-100 latency and recall against exact search", ""]
    for res in results.values():
        lines += [
            f"## {res['n_items']:,} items ({res['vectors']}); {res['n_queries']:,} user queries, "
            f"{res['dim']}-d, 1 thread",
            "",
            "| index | recall@100 vs exact | single p50 ms | single p99 ms | batch-256 p50 ms | "
            "batch-256 p99 ms | batched µs/query | build s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in res["rows"]:
            lines.append(
                f"| {label(r['params'])} | {r['recall@100']:.4f} | {r['single_ms_p50']:.3f} | "
                f"{r['single_ms_p99']:.3f} | {r['batch_ms_p50']:.2f} | {r['batch_ms_p99']:.2f} | "
                f"{r['batched_us_per_query']:.1f} | {r['build_seconds']:.1f} |"
            )
        lines.append("")
    lines.append("Protocol: see `benchmarks/ann_index.py`; FAISS with one OpenMP thread on a "
                 "2-core CPU shared with other work.")  # fmt: skip
    payload = {"protocol": __doc__.split("Protocol\n--------\n")[1].split("\n    OMP")[0].strip(),
               "k": K, "batch": BATCH, "results": results}  # fmt: skip
    write_result("ann_index", payload, "\n".join(lines),
                 history="no held-out evaluation (ANN top-100 compared with exact search)")


if __name__ == "__main__":
    main()
