"""Benchmark: the multi-stage system against every source alone, its ablation, the truth.

Protocol: each dataset with its split (leave-last-out by time on the worlds and MovieLens-100k,
the given UniSRec split on Amazon Scientific); every model trained on the training part with
early stopping on validation; the system built from them (sources: the session transformer,
LightGCN, the two-tower's ANN index, content neighbours from cnn-text, popularity; the ranker
learned on the candidates of half of the validation users; the re-ranker's weights chosen on
the other half). Test: full ranking over the whole catalogue, train + validation items masked,
Recall@K / NDCG@K over every test user; the system scores its candidates and ``-inf`` for the
rest, so it is judged by the same evaluator as the models. The truth table (worlds only) uses
2,000 test users. Latency: 1,000 single requests (one user each), one thread, in-process.

    python benchmarks/system.py run --data demo|m5|ml100k|sci [--fresh | --rebuild]
    python benchmarks/system.py latency200k
    python benchmarks/system.py report
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, machine, write_result  # noqa: E402

HERE = Path(__file__).resolve().parent
WORK = HERE / "work" / "system"
SHARED = HERE.parent.parent / "shared" / "data"
DATA = {
    "demo": "demo world (seed 0): 6,000 users, 3,500 items, 199k interactions",
    "m5": "m5 world (seed 0): 50,000 users, 20,000 items, 499k interactions",
    "ml100k": "MovieLens-100k: 943 users, 1,682 movies, 100k ratings as interactions",
    "sci": "Amazon Scientific (UniSRec split): 8,442 users, 4,385 items",
}
#: the runs of each dataset: name -> (model, options); every source and baseline
RUNS: dict[str, dict[str, tuple[str, list[str]]]] = {
    "demo": {
        "pop": ("pop", []),
        "mf": ("mf", []),
        "gf-cf": ("gf-cf", []),
        "transformer": ("transformer", ["epochs=12", "lr=2e-3", "batch_size=32",
                                        "schedule=cosine", "warmup_epochs=1"]),
        "lightgcn": ("lightgcn", []),
        "two-tower": ("two-tower", ["text_encoder=cnn"]),
        "cnn-text": ("cnn-text", []),
    },
    "m5": {
        "pop": ("pop", []),
        "mf": ("mf", []),
        "gf-cf": ("gf-cf", []),
        # 20k items: a sampled softmax (1,024 negatives, log-Q corrected) instead of the full
        "transformer": ("transformer", ["epochs=10", "lr=2e-3", "batch_size=128",
                                        "schedule=cosine", "warmup_epochs=1", "loss=sampled",
                                        "n_negatives=1024", "proposal=pop"]),
        "lightgcn": ("lightgcn", []),
        "two-tower": ("two-tower", ["text_encoder=cnn", "epochs=5"]),
        "cnn-text": ("cnn-text", ["epochs=10"]),
    },
    "ml100k": {
        "pop": ("pop", []),
        "mf": ("mf", []),
        "gf-cf": ("gf-cf", []),
        "transformer": ("transformer", ["epochs=40", "valid_metric=ndcg@10"]),
        "lightgcn": ("lightgcn", ["epochs=20"]),
        "two-tower": ("two-tower", []),
        "minilm": ("minilm", []),
    },
    "sci": {
        "pop": ("pop", []),
        "mf": ("mf", []),
        "gf-cf": ("gf-cf", []),
        "transformer": ("transformer", ["epochs=40", "valid_metric=ndcg@10"]),
        "lightgcn": ("lightgcn", []),
        "two-tower": ("two-tower", []),
        "minilm": ("minilm", []),
    },
}
COMMON = ["threads=2"]
#: the ablation and the source recall use at most this many test users (a seeded sample)
ABLATION_USERS = 10_000


def system_config(data: str, runs: Path) -> dict[str, Any]:
    """The system of a dataset: its sources and stages."""
    content = "cnn-text" if "cnn-text" in RUNS[data] else "minilm"
    cfg: dict[str, Any] = {
        "k": 10,
        "seed": 0,
        "sources": [
            {"name": "session", "run": str(runs / "transformer"), "quota": 100},
            {"name": "graph", "run": str(runs / "lightgcn"), "quota": 100},
            {"name": "towers", "run": str(runs / "two-tower"), "quota": 100},
            {"name": "content", "kind": "neighbours", "run": str(runs / content), "quota": 50},
            {"name": "popular", "kind": "popular", "quota": 50, "half_life_days": 14.0},
        ],
        "ranker": {"kind": "learned", "model": "mlp", "users": 4000, "negatives": 50},
        "reranker": {"tune": True},
    }
    if data in ("ml100k", "sci"):  # no platform vectors: the similarity feature reads MiniLM's
        cfg["features"] = {"vectors": "content"}
    return cfg


def dataset(data: str) -> Path:
    """The dataset directory (generated or imported once)."""
    from streamrec.data.importers import import_dataset
    from streamrec.data.world import generate_world

    out = WORK / data / "data"
    if (out / "meta.json").is_file():
        return out
    if data in ("demo", "m5"):
        generate_world(data, out, seed=0)
    elif data == "ml100k":
        import_dataset("movielens-100k", SHARED / "movielens-100k" / "raw", out)
    else:
        import_dataset("unisrec", SHARED / "amazon-scientific", out)
    return out


def train_all(data: str, fresh: bool) -> dict[str, Any]:
    """Train every run of the dataset (kept unless ``fresh``); their train seconds."""
    from streamrec.run import load_run, train_run

    path = dataset(data)
    out = {}
    for name, (model, options) in RUNS[data].items():
        run_dir = WORK / data / "runs" / name
        if run_dir.is_dir() and (run_dir / "results.json").is_file() and not fresh:
            run = load_run(run_dir)
        else:
            print(f"== training {name}", flush=True)
            run = train_run(model, path, run_dir, overrides=[*options, *COMMON],
                            overwrite=True, progress=False)
        out[name] = run
    return out


def run(data: str, fresh: bool = False, rebuild: bool = False) -> dict[str, Any]:
    import torch

    from streamrec.judge import (
        ablation,
        eval_users,
        latency,
        leaderboard,
        source_recall,
        truth_table,
    )
    from streamrec.serve.system import build_system, load_system

    torch.set_num_threads(2)
    runs = train_all(data, fresh)
    sys_dir = WORK / data / "system"
    t0 = time.perf_counter()
    if fresh or rebuild or not (sys_dir / "system.json").is_file():
        system = build_system(system_config(data, WORK / data / "runs"), sys_dir, overwrite=True)
    else:
        system = load_system(sys_dir)
    build_s = time.perf_counter() - t0
    print(f"== system built in {build_s:.0f}s", flush=True)
    print("== leaderboard, ablation, source recall, truth", flush=True)
    board = leaderboard({**runs, "system": system})
    sample = eval_users(system, max_users=ABLATION_USERS)
    abl = ablation(system, users=sample)
    recall = source_recall(system, users=sample)
    truth = None
    if data in ("demo", "m5"):
        users = eval_users(system, max_users=2000)
        truth = truth_table({n: runs[n] for n in ("pop", "mf", "gf-cf", "transformer",
                                                  "lightgcn", "two-tower")} | {"system": system},
                            users)
    print("== latency", flush=True)
    lat = latency(system, 1000) if data in ("demo", "m5") else None
    spec = json.loads((sys_dir / "system.json").read_text())
    return {
        "data": DATA[data],
        "protocol": {
            "split": system.split.protocol(),
            "candidates": "full ranking over all items; train + valid items masked",
            "users": board[0]["protocol"]["users_evaluated"],
            "ks": [10, 20],
            "truth_users": 2000 if truth is not None else None,
            "ablation_users": int(len(sample)),
        },
        "runs": {n: {"model": r.config["model"], "options": RUNS[data][n][1],
                     "train_seconds": r.results.get("train_seconds")} for n, r in runs.items()},
        "system": {"config": spec["config"], "sources": spec["sources"],
                   "reranker": spec["reranker"], "reranker_tuning": spec["reranker_tuning"],
                   "ranker_users": spec["ranker"]["trained_on_users"],
                   "build_seconds": spec["build_seconds"]},
        "leaderboard": board,
        "ablation": abl,
        "source_recall": recall,
        "truth": truth,
        "latency": lat,
        "loadavg": os.getloadavg(),
    }


def latency200k() -> dict[str, Any]:
    """The system's latency on the platform's 200k-item catalogue (a world with the `platform`
    preset's items and 30,000 users; every source trained one epoch: latency, not quality)."""
    import dataclasses

    from streamrec.data.world import PRESETS, generate_world
    from streamrec.judge import latency
    from streamrec.run import train_run
    from streamrec.serve.system import build_system

    cfg = dataclasses.replace(PRESETS["platform"], name="platform-items", n_users=30_000,
                              n_interactions=1_200_000, n_impressions=0, chunk_users=10_000)
    base = WORK / "platform200k"
    data = base / "data"
    if not (data / "meta.json").is_file():
        generate_world(cfg, data, seed=0)
    runs = {
        "transformer": ("transformer", ["epochs=1", "loss=sampled", "n_negatives=512",
                                        "proposal=uniform", "batch_size=256"]),
        "lightgcn": ("lightgcn", ["epochs=1"]),
        "two-tower": ("two-tower", ["epochs=1", "text_encoder=none", "index=ivf"]),
        "tfidf-svd": ("tfidf-svd", []),
    }
    for name, (model, options) in runs.items():
        if not (base / "runs" / name / "results.json").is_file():
            print(f"== training {name}", flush=True)
            train_run(model, data, base / "runs" / name, overrides=[*options, *COMMON],
                      overwrite=True, progress=False)
    cfg_sys = {
        "k": 10,
        "sources": [
            {"name": "session", "run": str(base / "runs" / "transformer"), "quota": 100},
            {"name": "graph", "run": str(base / "runs" / "lightgcn"), "quota": 100},
            {"name": "towers", "run": str(base / "runs" / "two-tower"), "quota": 100},
            {"name": "content", "kind": "neighbours", "run": str(base / "runs" / "tfidf-svd"),
             "quota": 50},
            {"name": "popular", "kind": "popular", "quota": 50},
        ],
        "ranker": {"kind": "learned", "model": "mlp", "users": 3000, "negatives": 50},
        "reranker": {"diversity": 0.1, "category_cap": 3, "freshness": 0.05},
    }
    system = build_system(cfg_sys, base / "system", overwrite=True)
    return {"data": f"{cfg.n_items:,} items (the platform preset's), {cfg.n_users:,} users",
            "latency": latency(system, 1000)}


def table(name: str, res: dict[str, Any]) -> str:
    lines = [f"**{res['data']}** (split {res['protocol']['split']['method']}, full ranking, "
             f"{res['protocol']['users']:,} test users)", "",
             "| model | Recall@10 | NDCG@10 | Recall@20 | NDCG@20 |", "|---|---|---|---|---|"]
    board = sorted(res["leaderboard"], key=lambda r: -r["metrics"]["ndcg@10"])
    best_single = max(r["metrics"]["ndcg@10"] for r in board if r["name"] != "system")
    for r in board:
        m = r["metrics"]
        bold = "**" if r["name"] == "system" else ""
        lines.append(f"| {bold}{r['name']}{bold} | {m['recall@10']:.4f} | {m['ndcg@10']:.4f} | "
                     f"{m['recall@20']:.4f} | {m['ndcg@20']:.4f} |")
    sys_ndcg = next(r for r in board if r["name"] == "system")["metrics"]["ndcg@10"]
    verdict = "met" if sys_ndcg > best_single else "NOT met"
    lines += ["", f"system NDCG@10 {sys_ndcg:.4f} vs best single model {best_single:.4f}: "
                  f"{100 * (sys_ndcg / best_single - 1):+.1f}% (target: beat it): {verdict}", "",
              "| ablation | Recall@10 | NDCG@10 | NDCG@20 |", "|---|---|---|---|"]
    for r in res["ablation"]:
        m = r["metrics"]
        lines.append(f"| {r['name']} | {m['recall@10']:.4f} | {m['ndcg@10']:.4f} | "
                     f"{m['ndcg@20']:.4f} |")
    rec = res["source_recall"]
    lines += ["", "| source | quota | recall at quota |", "|---|---|---|"]
    for s, v in rec["sources"].items():
        lines.append(f"| {s} | {v['quota']} | {v['recall']:.4f} |")
    lines.append(f"| all sources merged | {rec['candidates_per_user']} | {rec['merged']:.4f} |")
    if res.get("truth"):
        lines += ["", "| top 10 (2,000 test users) | true engagement | oracle | ratio | ILD | "
                  "category coverage | novelty | catalogue coverage |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in res["truth"]:
            lines.append(f"| {r['name']} | {r['true_engagement']:.3f} | "
                         f"{r['oracle_engagement']:.3f} | {r['engagement_ratio']:.3f} | "
                         f"{r.get('ild', float('nan')):.3f} | {r['category_coverage']:.3f} | "
                         f"{r['novelty']:.2f} | {r['catalogue_coverage']:.3f} |")
    rr = res["system"]["reranker"]
    lines += ["", f"re-ranker chosen on validation: diversity {rr['diversity']}, category cap "
                  f"{rr['category_cap']}, freshness {rr['freshness']}"]
    if res.get("latency"):
        lines += ["", latency_table(res["latency"])]
    return "\n".join(lines)


def latency_table(lat: dict[str, Any]) -> str:
    lines = [f"latency of single requests ({lat['requests']} users, {lat['threads']} thread, "
             f"{lat['n_items']:,} items), ms", "", "| stage | p50 | p95 | p99 |",
             "|---|---|---|---|"]
    for stage, v in lat["stages_ms"].items():
        lines.append(f"| {stage} | {v['p50']:.2f} | {v['p95']:.2f} | {v['p99']:.2f} |")
    return "\n".join(lines)


def report() -> None:
    parts, payload = [], {"machine": machine()}
    for data in DATA:
        f = RESULTS / f"system_{data}.json"
        if f.is_file():
            res = json.loads(f.read_text())
            payload[data] = res
            parts.append(table(data, res))
    f = RESULTS / "system_latency200k.json"
    if f.is_file():
        res = json.loads(f.read_text())
        payload["latency200k"] = res
        parts.append(f"**{res['data']}**\n\n" + latency_table(res["latency"]))
    write_result("system", payload, "\n\n".join(parts), history="train+valid")


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--data", choices=list(DATA), required=True)
    r.add_argument("--fresh", action="store_true", help="retrain every run and the system")
    r.add_argument("--rebuild", action="store_true", help="rebuild the system (keep the runs)")
    sub.add_parser("latency200k")
    sub.add_parser("report")
    args = ap.parse_args()
    if args.cmd == "run":
        res = run(args.data, args.fresh, args.rebuild)
        write_result(f"system_{args.data}", res, table(args.data, res), history="train+valid")
    elif args.cmd == "latency200k":
        res = latency200k()
        write_result("system_latency200k", res, latency_table(res["latency"]), history="none")
    else:
        report()


if __name__ == "__main__":
    main()
