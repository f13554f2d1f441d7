"""Judging a system against its parts: leaderboard, ablation, truth, source recall, latency.

Everything here reaches the system and the models through their contracts and the one
evaluator, so a number for the system and a number for a model mean the same thing:

* :func:`leaderboard` — full-ranking metrics of every run and of the system, one protocol;
* :func:`ablation` — the system with one stage or one source taken away (a source is removed
  at serving time: its candidates and its rank feature are gone, the ranker is not retrained);
* :func:`truth_table` — the list measures of :mod:`streamrec.eval.truth` (on a world, the true
  expected engagement of the served top ``k`` against the oracle's);
* :func:`source_recall` — how often the held-out item is among a source's candidates at all
  (its recall at its quota: the ceiling the ranker cannot pass);
* :func:`latency` — per-stage and end-to-end latency of single requests, one thread.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from streamrec.eval.evaluator import evaluate_ranking, rank_users
from streamrec.eval.truth import TrueEngagement, list_measures
from streamrec.run import Run
from streamrec.serve.rerank import RerankOptions
from streamrec.serve.state import HistoryIndex
from streamrec.serve.system import STAGES, System, SystemRun


def eval_users(run: Run, stage: str = "test", max_users: int | None = None,
               seed: int = 0) -> np.ndarray:
    """The users with held-out items at ``stage`` (a seeded random subset of ``max_users``)."""
    users = np.unique(run.dataset.user[run.split.mask(stage)])
    if max_users is not None and len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    return users


def leaderboard(runs: dict[str, Run], stage: str = "test", ks: Sequence[int] = (10, 20),
                users: np.ndarray | None = None) -> list[dict[str, Any]]:
    """One row per run (models and systems): its metrics at ``stage`` under one protocol."""
    rows = []
    for name, run in runs.items():
        t0 = time.perf_counter()
        ev = evaluate_ranking(run.model, run.dataset, run.split, stage, ks, users=users,
                              batch_size=256)
        rows.append({"name": name, "model": run.config.get("model"),
                     "metrics": ev["metrics"], "protocol": ev["protocol"],
                     "eval_seconds": time.perf_counter() - t0})
    return rows


def variant(system_run: SystemRun, ranker: bool = True, reranker: bool = True,
            without: str | None = None) -> SystemRun:
    """A copy of a system with its ranker or re-ranker off, or one source removed."""
    model: System = copy.copy(system_run.model)
    if not ranker:
        model.ranker = None
    if not reranker:
        model.reranker = RerankOptions()
    if without is not None:
        names = [s.name for s in model.sources]
        if without not in names:
            raise ValueError(f"the system has no source {without!r}; it has {', '.join(names)}")
        model.sources = [s for s in model.sources if s.name != without]
    model._index = None
    out = copy.copy(system_run)
    out.model = model
    return out


def ablation(system_run: SystemRun, stage: str = "test", ks: Sequence[int] = (10, 20),
             users: np.ndarray | None = None) -> list[dict[str, Any]]:
    """The full system, then without its ranker, without its re-ranker, and without each
    source in turn (see the module docstring)."""
    runs = {"system": system_run,
            "without ranker (merged order)": variant(system_run, ranker=False),
            "without re-ranker": variant(system_run, reranker=False)}
    for s in system_run.model.sources:
        if len(system_run.model.sources) > 1:
            runs[f"without source {s.name}"] = variant(system_run, without=s.name)
    return leaderboard(runs, stage, ks, users)


def served_lists(run: Run, users: np.ndarray, stage: str = "test", k: int = 10) -> np.ndarray:
    """The top-``k`` lists [U, k] a run serves ``users`` at ``stage`` (seen items masked)."""
    history = run.split.history(run.dataset, stage)
    items, _ = rank_users(run.model, users, history, k, batch_size=256)
    return items


def truth_table(runs: dict[str, Run], users: np.ndarray, stage: str = "test", k: int = 10,
                embeddings: np.ndarray | None = None) -> list[dict[str, Any]]:
    """The list measures of each run's top-``k`` lists for ``users`` (true engagement against
    the oracle on a world; diversity, coverage and novelty anywhere)."""
    rows = []
    for name, run in runs.items():
        ds = run.dataset
        history = run.split.history(ds, stage)
        truth = TrueEngagement.of(ds)
        lists = served_lists(run, users, stage, k)
        rows.append({"name": name, **list_measures(lists, users, ds, history, truth,
                                                   embeddings)})
    return rows


def source_recall(system_run: SystemRun, stage: str = "test",
                  users: np.ndarray | None = None) -> dict[str, Any]:
    """For each source, the share of the held-out (user, item) pairs whose item it proposed
    (its recall at its quota); ``merged``: any source; ``after filters``: still there after the
    filters. Over ``users`` (default: every user with a held-out item)."""
    ds, split, system = system_run.dataset, system_run.split, system_run.model
    history = split.history(ds, stage)
    part = split.part(ds, stage)
    users = eval_users(system_run, stage) if users is None else np.asarray(users)
    index = HistoryIndex(history, system.blocks)
    names = [s.name for s in system.sources]
    hits = dict.fromkeys(names, 0)
    merged = after = n = 0
    target = {}
    for u, i in zip(part.user, part.item):
        target.setdefault(int(u), set()).add(int(i))
    for s in range(0, len(users), 256):
        states = index.states(users[s : s + 256])
        exclude = [system.exclusions(st) for st in states]
        props = {src.name: src.propose(states, exclude, history) for src in system.sources}
        cands = system.candidates(states, history)
        for b, st in enumerate(states):
            for item in target.get(st.user, ()):
                n += 1
                found = False
                for name in names:
                    if item in set(props[name][b][0].tolist()):
                        hits[name] += 1
                        found = True
                merged += found
                after += item in set(cands[b].items.tolist())
    quotas = {src.name: src.quota for src in system.sources}
    return {"pairs": n, "sources": {name: {"quota": quotas[name], "recall": hits[name] / max(n, 1)}
                                    for name in names},
            "merged": merged / max(n, 1), "after_filters": after / max(n, 1),
            "candidates_per_user": int(sum(quotas.values()))}


def latency(system_run: SystemRun, n_users: int = 1000, stage: str = "test", k: int = 10,
            threads: int = 1, warmup: int = 20, seed: int = 0) -> dict[str, Any]:
    """Latency of single requests (one user each, as a server sees them): per stage and end to
    end, p50 / p95 / p99 in milliseconds over ``n_users`` users, with ``threads`` threads."""
    import torch

    ds, split, system = system_run.dataset, system_run.split, system_run.model
    history = split.history(ds, stage)
    index = HistoryIndex(history, system.blocks)
    rng = np.random.default_rng(seed)
    users = rng.choice(ds.n_users, min(n_users + warmup, ds.n_users), replace=False)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except ImportError:
        pass
    times: dict[str, list[float]] = {}
    try:
        for j, u in enumerate(users):
            state = index.state(int(u))
            per: dict[str, float] = {}
            t0 = time.perf_counter()
            system.serve([state], history, k=k, timings=per)
            total = time.perf_counter() - t0
            if j < warmup:
                continue
            per["total"] = total
            for key, v in per.items():
                times.setdefault(key, []).append(v * 1000.0)
    finally:
        torch.set_num_threads(old)
    order = [f"source:{s.name}" for s in system.sources] + [s for s in STAGES
                                                            if s != "sources"] + ["total"]
    out = {}
    for key in order:
        if key in times:
            a = np.asarray(times[key])
            out[key] = {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
                        "p99": float(np.percentile(a, 99)), "mean": float(a.mean())}
    return {"requests": len(times.get("total", [])), "threads": threads, "k": k,
            "n_items": ds.n_items, "stages_ms": out}
