"""Benchmark: every trainable ranking model with its defaults on datasets of every size.

What a newcomer gets from ``streamrec train NAME`` with no options, on each dataset, beside
popularity and beside the model's own best known recipe (``BEST``: the settings earlier
benchmarks found best, each with its source). Datasets (``--data``):

* worlds: ``tiny``, ``demo``, ``m0`` and ``m5`` (seed 0);
* real: ``ml100k`` (MovieLens-100k), ``sci`` (Amazon Scientific, its given split), ``gowalla``
  (the LightGCN split);
* subsamples ``BASE@N`` (e.g. ``ml100k@10k``, ``gowalla@100k``): about N interactions of
  ``BASE``, a random share ``sqrt(N / total)`` of its users and of its items and their
  interactions, users with fewer than 3 dropped, written as a CSV and imported through the
  ``csv`` importer as a new user would (so no given split: leave-last-out by time).

Protocol: each dataset's default split (given where the files have one, else leave-last-out),
full ranking over the catalogue with training items masked, test split, K = 10. Every run is
``streamrec.run.train_run`` with no overrides (``default``: the default 10-minute time budget
applies, which shortens the schedule when the planned epochs will not fit; marked ``⏱``) or
the recipe's (``best``), the best under a wall-clock limit ``--time-limit`` that does not
change the recipe (the run stops at it with its best validated epoch; marked ``†``).
Targets (issue 19): with defaults, every ranking model beats popularity on every dataset of
10k+ interactions and reaches at least 90% of its best recipe's NDCG@10; no default run takes
more than 10 minutes.

Results accumulate in ``results/defaults.json`` (a row per dataset, model and recipe, replaced
when re-run), so the benchmark can run in pieces; the Markdown table and the plot
(``results/defaults.png``: default / best NDCG@10 and default / popularity NDCG@10 against the
dataset size) are rebuilt from all rows every time.

    python benchmarks/defaults.py [--data tiny demo ml100k ml100k@10k ...]
        [--models mf gru ...] [--recipes default best] [--time-limit 900] [--threads 2]
    python benchmarks/defaults.py --quick   # tiny world, mf and gru, a smoke test
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, machine  # noqa: E402

WORK = Path(__file__).resolve().parent / "work" / "defaults"
SHARED = Path(__file__).resolve().parents[2] / "shared"
DATASETS = ("demo", "ml100k", "sci", "gowalla", "ml100k@1k", "ml100k@10k", "sci@1k",
            "sci@10k", "gowalla@1k", "gowalla@10k", "gowalla@100k")
KS = (10, 20)

#: the best known recipe of each model and where it comes from (``--set`` strings)
BEST: dict[str, tuple[list[str], str]] = {
    "mf": (["lr=5e-3", "batch_size=1024", "epochs=30"], "session_models.md (ML-100k, Sci)"),
    "lightgcn": (["batch_size=16384", "epochs=5"], "gowalla_lightgcn.md"),
    "gcn": (["batch_size=16384", "epochs=20"], "m0_graph.md (former defaults)"),
    "graphsage": (["batch_size=16384", "epochs=20"], "m0_graph.md (former defaults)"),
    "gat": (["batch_size=32768", "epochs=10"], "m0_graph.md (former defaults)"),
    "gru": (["lr=3e-3", "batch_size=64", "epochs=20", "schedule=cosine", "warmup_epochs=1",
             "max_windows_per_sequence=none"], "demo + session_models.md"),
    "lstm": (["lr=3e-3", "batch_size=64", "epochs=20", "schedule=cosine", "warmup_epochs=1",
              "max_windows_per_sequence=none"], "demo + session_models.md"),
    "transformer": (["lr=2e-3", "batch_size=32", "epochs=24", "schedule=cosine",
                     "warmup_epochs=1", "max_windows_per_sequence=none"],
                    "defaults_demo.md (24 epochs)"),
    "two-tower": (["batch_size=1024", "epochs=10", "patience=3"], "two_tower.md"),
    "mult-vae": (["batch_size=500", "epochs=100", "patience=10"], "Liang et al. 2018"),
    "mult-dae": (["batch_size=500", "epochs=100", "patience=10"], "Liang et al. 2018"),
    "diffrec": (["batch_size=400", "epochs=100", "patience=10"], "generative.md"),
    "l-diffrec": (["batch_size=400", "epochs=100", "patience=10"], "generative.md"),
    "cfgan": ([], "its defaults are its recipe"),
    "blend": (["batch_size=16384", "epochs=5"], "gowalla_lightgcn.md (its LightGCN part)"),
    "cnn-text": ([], "defaults_demo.md (its defaults are its recipe)"),
}


# ====================================================================== datasets
def parse_size(text: str) -> int:
    """``"10k"`` -> 10000, ``"1m"`` -> 1000000, ``"500"`` -> 500."""
    t = text.lower().strip()
    mult = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    return int(float(t[:-1] if mult > 1 else t) * mult)


def base_dataset(name: str, work: Path) -> Path:
    """The directory of a named dataset (generated / imported once into ``work``)."""
    from streamrec.data.importers import import_dataset
    from streamrec.data.world import generate_world

    # Gowalla is shared with gowalla_graph.py (the same import, made once)
    out = work.parent / "graph" / "gowalla" if name == "gowalla" else work / name
    if (out / "meta.json").is_file():
        return out
    if name == "gowalla":
        import_dataset("lightgcn", SHARED / "data" / "gowalla", out)
    elif name in ("tiny", "demo", "m0", "m5"):
        generate_world(name, out, seed=0, progress=False)
    elif name == "ml100k":
        import_dataset("movielens-100k", SHARED / "data" / "movielens-100k" / "raw", out)
    elif name == "sci":
        import_dataset("unisrec", SHARED / "data" / "amazon-scientific", out)
    else:
        raise SystemExit(f"error: unknown dataset {name!r}; use one of "
                         f"{', '.join(('tiny', 'm0', 'm5', *DATASETS))} or BASE@N")
    return out


def subsample(base: Path, target: int, out: Path, seed: int = 0) -> Path:
    """About ``target`` interactions of the dataset at ``base``: a random share
    ``sqrt(target / total)`` of its users and of its items (adjusted once to hit the target),
    users with fewer than 3 interactions dropped; written as CSV and imported (``csv``)."""
    from streamrec.data.dataset import load_dataset
    from streamrec.data.importers import import_dataset

    if (out / "meta.json").is_file():
        return out
    ds = load_dataset(base)
    rng = np.random.default_rng(seed)
    ukey, ikey = rng.random(ds.n_users), rng.random(ds.n_items)
    share = math.sqrt(min(1.0, target / ds.n_interactions))
    for _ in range(3):  # the density of the kept block differs from the whole: correct it
        keep = (ukey[ds.user] < share) & (ikey[ds.item] < share)
        counts = np.bincount(ds.user[keep], minlength=ds.n_users)
        keep &= counts[ds.user] >= 3
        got = int(keep.sum())
        if got == 0 or abs(got - target) < 0.1 * target:
            break
        share = min(1.0, share * math.sqrt(target / got))
    out.parent.mkdir(parents=True, exist_ok=True)
    csv = out.parent / f"{out.name}.csv"
    ts = ds.timestamp[keep]
    with open(csv, "w") as f:
        f.write("user_id,item_id,timestamp\n")
        for u, i, t in zip(ds.user_ids[ds.user[keep]], ds.item_ids[ds.item[keep]], ts,
                           strict=True):
            f.write(f"{u},{i},{int(t)}\n")
    import_dataset("csv", csv, out, name=out.name)
    csv.unlink()
    return out


def dataset_dir(name: str, work: Path) -> Path:
    """A named dataset or a subsample ``BASE@N``."""
    if "@" in name:
        base, size = name.split("@", 1)
        return subsample(base_dataset(base, work), parse_size(size), work / name.replace("@", "-"))
    return base_dataset(name, work)


# ====================================================================== models
def ranking_models() -> list[str]:
    """Trainable ranking models whose packages are installed."""
    from streamrec.models import models_where

    return models_where(lambda cls: cls.trainable and cls.task == "ranking")


def run_one(model: str, data: Path, overrides: list[str], time_limit: float, threads: int,
            runs: Path) -> dict[str, Any]:
    """Train and test one model; its metrics, time and what the budget chose."""
    import torch
    from rich.console import Console

    from streamrec.run import train_run

    torch.set_num_threads(threads)
    out = runs / f"{data.name}-{model}-{abs(hash(tuple(overrides))) % 10**8}"
    if out.exists():
        shutil.rmtree(out)
    sets = [*overrides]
    if model != "pop" and overrides:  # a recipe: a deadline, its schedule kept
        sets += [f"train.time_budget={time_limit}", "train.fit_to_time_budget=false"]
    t0 = time.perf_counter()
    run = train_run(model, data, out, overrides=sets, ks=KS, progress=False,
                    console=Console(quiet=True), overwrite=True)
    seconds = time.perf_counter() - t0
    res = run.results
    train = res.get("train", {})
    test = res.get("test") or res.get("valid")
    shutil.rmtree(out, ignore_errors=True)
    return {
        "metrics": {k: v for k, v in test["metrics"].items() if k.split("@")[0] in (
            "recall", "ndcg")},
        "stage": "test" if "test" in res else "valid",
        "seconds": seconds,
        "train_seconds": res.get("train_seconds"),
        "epochs_run": train.get("epochs_run"),
        "best_epoch": train.get("best_epoch"),
        "stop_reason": train.get("stop_reason"),
        "budget": train.get("budget"),
    }


# ====================================================================== report
def table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table: one line per dataset and model."""
    by = {(r["dataset"], r["model"], r["recipe"]): r for r in rows}
    datasets = sorted({r["dataset"] for r in rows}, key=lambda d: by_size(rows, d))
    lines = ["| dataset | interactions | model | NDCG@10 default | NDCG@10 best | default / "
             "best | NDCG@10 pop | beats pop | default s (epochs) | batch x steps |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    failures: list[str] = []
    for d in datasets:
        pop = by.get((d, "pop", "default"))
        p = pop["metrics"].get("ndcg@10") if pop else None
        for m in sorted({r["model"] for r in rows if r["dataset"] == d and r["model"] != "pop"}):
            dr, br = by.get((d, m, "default")), by.get((d, m, "best"))
            dv = dr["metrics"].get("ndcg@10") if dr else None
            bv = br["metrics"].get("ndcg@10") if br else None
            ratio = f"{dv / bv:.0%}" if dv is not None and bv else "–"
            beats = "–" if dv is None or p is None else ("yes" if dv > p else "**no**")
            b = dr.get("budget") if dr else None
            plan = f"{b['batch_size']} x {b['total_steps']}" if b else "–"
            secs = "–"
            if dr and dr.get("error"):
                secs = "failed (below)"
                failures.append(f"* {d}, {m}: {dr['error']}")
            elif dr:
                mark = " †" if dr.get("stop_reason") == "time budget" else ""
                fitted = (b or {}).get("fitted_epochs")
                if fitted:
                    mark += f" ⏱{b['epochs']}→{fitted}"
                secs = f"{dr['train_seconds']:.0f} ({dr['epochs_run']}){mark}"
            lines.append(f"| {d} | {by_size(rows, d):,} | {m} | {fmt(dv)} | {fmt(bv)} | {ratio} "
                         f"| {fmt(p)} | {beats} | {secs} | {plan} |")
    if failures:
        lines += ["", "Runs that failed (the model cannot train on that data set):", *failures]
    return "\n".join(lines)


def by_size(rows: list[dict[str, Any]], dataset: str) -> int:
    return next((r["interactions"] for r in rows if r["dataset"] == dataset), 0)


def fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.4f}"


def plot(rows: list[dict[str, Any]], out: Path) -> None:
    """Default / best and default / popularity NDCG@10 against the dataset size, per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = {(r["dataset"], r["model"], r["recipe"]): r for r in rows}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    # one line per model and dataset family (a base data set and its subsamples): the colour
    # is the model, the line style the family, so no line joins two different data sets
    families = sorted({r["dataset"].split("@")[0] for r in rows})
    styles = dict(zip(families, ["-", "--", ":", "-.", (0, (1, 4)), (0, (5, 1, 1, 1, 1, 1))]
                      * len(families), strict=False))
    models = sorted({r["model"] for r in rows if r["model"] != "pop"})
    colours = {m: plt.get_cmap("tab20")(i % 20) for i, m in enumerate(models)}
    for model in models:
        for ax, ref in zip(axes, ("best", "pop"), strict=True):
            labelled = False
            for family in families:
                pts = []
                for r in rows:
                    if (r["model"] != model or r["recipe"] != "default"
                            or r["dataset"].split("@")[0] != family):
                        continue
                    other = by.get((r["dataset"], model, "best") if ref == "best"
                                   else (r["dataset"], "pop", "default"))
                    dv = r["metrics"].get("ndcg@10")
                    ov = other and other["metrics"].get("ndcg@10")
                    if dv is not None and ov:
                        pts.append((r["interactions"], dv / ov))
                if pts:
                    pts.sort()
                    ax.plot(*zip(*pts, strict=True), marker="o", color=colours[model],
                            ls=styles[family],
                            label=None if labelled or ref == "pop" else model)
                    labelled = True
    for family in families:  # the line styles' key
        axes[1].plot([], [], color="grey", ls=styles[family], label=family)
    for ax, title, line in zip(axes, ("default / best recipe", "default / popularity"),
                               (0.9, 1.0), strict=True):
        ax.axhline(line, color="grey", ls="--", lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("interactions in the dataset")
        ax.set_ylabel("NDCG@10 ratio")
        ax.set_title(f"NDCG@10: {title}")
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=7, ncol=2, title="model", title_fontsize=7)
        axes[1].legend(fontsize=7, title="data set (and its subsamples)", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


# ====================================================================== main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=list(DATASETS))
    ap.add_argument("--models", nargs="+", default=None,
                    help="default: every trainable ranking model")
    ap.add_argument("--recipes", nargs="+", default=["default", "best"],
                    choices=["default", "best"])
    ap.add_argument("--time-limit", type=float, default=900.0,
                    help="seconds of training per run at most (the best epoch is kept)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=WORK, help="datasets and runs are made here")
    ap.add_argument("--name", default="defaults", help="results/NAME.{json,md,png}")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: the tiny world and tiny@1k, mf and gru, 120 s per run")
    args = ap.parse_args()
    if args.quick:
        args.data, args.models = ["tiny", "tiny@1k"], args.models or ["mf", "gru"]
        args.time_limit, args.name = min(args.time_limit, 120.0), "defaults_quick"
    models = args.models or ranking_models()
    known = set(ranking_models())
    unknown = [m for m in models if m not in known]
    if unknown:
        raise SystemExit(f"error: not trainable ranking models (or not installed): "
                         f"{', '.join(unknown)}; choose among {', '.join(sorted(known))}")
    args.work.mkdir(parents=True, exist_ok=True)
    out_json = RESULTS / f"{args.name}.json"
    rows: list[dict[str, Any]] = (json.loads(out_json.read_text())["rows"]
                                  if out_json.is_file() else [])
    from streamrec.data.dataset import load_dataset

    for d in args.data:
        path = dataset_dir(d, args.work)
        n = load_dataset(path).n_interactions
        todo = [("pop", "default", [])]
        for m in models:
            for recipe in args.recipes:
                if recipe == "best" and not BEST.get(m, ([], ""))[0]:
                    continue  # its defaults are its recipe: nothing else to run
                todo.append((m, recipe, [] if recipe == "default" else BEST[m][0]))
        for model, recipe, overrides in todo:
            print(f"{d} ({n:,} interactions): {model} {recipe} {' '.join(overrides)}",
                  flush=True)
            try:
                res = run_one(model, path, overrides, args.time_limit, args.threads,
                              args.work / "runs")
            except Exception as e:  # a failing model is a result too; go on with the rest
                res = {"metrics": {}, "error": f"{type(e).__name__}: {e}"}
                print(f"  failed: {res['error']}", flush=True)
            row = {"dataset": d, "interactions": n, "model": model, "recipe": recipe,
                   "overrides": overrides, **res}
            rows = [r for r in rows if (r["dataset"], r["model"], r["recipe"]) != (
                d, model, recipe)] + [row]
            print(f"  ndcg@10={fmt(res['metrics'].get('ndcg@10'))} "
                  f"{res.get('train_seconds') or 0:.0f}s", flush=True)
            write(rows, args.name)
    print(table(rows))


def write(rows: list[dict[str, Any]], name: str) -> None:
    """``results/NAME.json`` (every row), ``.md`` (the table) and ``.png`` (the plot)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "machine": machine(), "protocol": (
        "each dataset's default split, full ranking, training items masked, test, K=10"),
        "best_recipes": {m: {"overrides": o, "source": s} for m, (o, s) in BEST.items()},
        "rows": rows}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2, default=str))
    head = ("Defaults against the best known recipe and popularity (test NDCG@10; "
            "† = stopped at the time limit or budget, best epoch kept; ⏱ P→F = the default "
            "10-minute time budget shortened the planned P epochs to F; rows before that "
            "change (2026-12-07) ran under the benchmark's own limit instead)\n\n")
    (RESULTS / f"{name}.md").write_text(head + table(rows) + "\n")
    plot(rows, RESULTS / f"{name}.png")


if __name__ == "__main__":
    main()
