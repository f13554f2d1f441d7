"""The main job: a world, one model per milestone, the system built from them, judged as a whole.

``streamrec demo`` (or :func:`run_demo` from Python) writes into one directory::

    data/                the generated world
    runs/MODEL/          one run directory per model
    system.toml          the system's config (sources, ranker, re-ranker): read it, edit it
    system/              the system built from the runs (``streamrec evaluate OUT/system``)
    report/report.md     leaderboard, ablation, truth table, source recall, latency, plots
    report/leaderboard.json

Models: ``pop`` and ``mf`` (baselines), ``mlp-numpy`` and ``mlp`` (click prediction),
``cnn-text`` (content), ``gru`` and ``transformer`` (sessions), ``two-tower`` (retrieval),
``lightgcn`` and ``gf-cf`` (graphs). The system's sources are the transformer, LightGCN, the
two-tower's ANN index, cnn-text's neighbours and popularity; its ranker is learned on their
candidates; its re-ranker is tuned on validation users (:mod:`streamrec.serve.system`).
``quick=True`` runs the same on the ``tiny`` world with a few epochs (about a minute; the tests
use it).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Models of the demo in display order, with settings sized for the whole demo to take under 6
#: minutes on 2 CPU cores (the benchmarks train longer: benchmarks/system.py).
DEMO_MODELS: dict[str, list[str]] = {
    "pop": [],
    "mf": ["epochs=20", "patience=3"],
    "gf-cf": [],
    "lightgcn": [],
    "ease": [],
    "mult-vae": ["epochs=8"],
    "diffrec": ["epochs=4"],
    "cfgan": ["epochs=1"],
    "cnn-text": ["epochs=8"],
    "gru": ["epochs=4", "lr=3e-3", "batch_size=64", "schedule=cosine", "warmup_epochs=1",
            "max_windows_per_sequence=none"],
    "transformer": ["epochs=8", "lr=3e-3", "batch_size=64", "schedule=cosine",
                    "warmup_epochs=1", "max_windows_per_sequence=none"],
    "two-tower": ["text_encoder=cnn", "epochs=2"],
    "mlp-numpy": [],
    "mlp": [],
}
#: the quick version: tiny world, a few epochs
QUICK_MODELS: dict[str, list[str]] = {
    "pop": [],
    "mf": ["epochs=5", "dim=16"],
    "gf-cf": ["k=32"],
    "lightgcn": ["epochs=2", "dim=16"],
    "ease": ["l2=10"],
    "mult-vae": ["epochs=2"],
    "diffrec": ["epochs=2"],
    "cfgan": ["epochs=2"],
    "cnn-text": ["epochs=2", "dim=32", "n_filters=32"],
    "gru": ["epochs=3", "d_model=16", "hidden=16"],
    "transformer": ["epochs=4", "d_model=16", "lr=3e-3"],
    "two-tower": ["text_encoder=cnn", "epochs=1", "dim=16", "hidden=32", "id_dim=8"],
    "mlp-numpy": ["fit_epochs=3", "hidden=[32, 16]"],
    "mlp": ["epochs=3", "hidden=[32, 16]"],
}
DEMO_KS = (10, 20)


def system_config(runs: Path, quick: bool = False) -> dict[str, Any]:
    """The demo system: five sources, a learned ranker, a tuned re-ranker."""
    q = 0.5 if quick else 1.0
    return {
        "k": 10,
        "seed": 0,
        "sources": [
            {"name": "session", "run": str(runs / "transformer"), "quota": int(100 * q)},
            {"name": "graph", "run": str(runs / "lightgcn"), "quota": int(100 * q)},
            {"name": "towers", "run": str(runs / "two-tower"), "quota": int(100 * q)},
            {"name": "content", "kind": "neighbours", "run": str(runs / "cnn-text"),
             "quota": int(50 * q)},
            {"name": "popular", "kind": "popular", "quota": int(50 * q),
             "half_life_days": 14.0},
        ],
        "ranker": {"kind": "learned", "model": "mlp", "users": 3000, "negatives": 50},
        "reranker": {"tune": True},
    }


def _toml(cfg: dict[str, Any]) -> str:
    """The system config as TOML (the demo writes what it built, for the user to edit)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        return str(v)

    lines = [f"{k} = {value(cfg[k])}" for k in ("k", "seed")]
    for s in cfg["sources"]:
        lines += ["", "[[sources]]", *[f"{k} = {value(v)}" for k, v in s.items()]]
    for table in ("ranker", "reranker"):
        lines += ["", f"[{table}]", *[f"{k} = {value(v)}" for k, v in cfg[table].items()]]
    return "\n".join(lines) + "\n"


def run_demo(
    out: str | Path,
    preset: str = "demo",
    seed: int = 0,
    models: Sequence[str] | None = None,
    console: Any = None,
    quick: bool = False,
) -> Path:
    """Run the demo end to end; returns the path of ``report.md``."""
    from rich.console import Console

    from streamrec.data.dataset import load_dataset
    from streamrec.data.world import PRESETS, generate_world
    from streamrec.models import available_models
    from streamrec.run import train_run

    console = console or Console(stderr=True)
    out = Path(out)
    if quick:
        preset = "tiny"
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    settings = QUICK_MODELS if quick else DEMO_MODELS
    chosen = list(models) if models else list(settings)
    unknown = [m for m in chosen if m not in available_models()]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}; available: "
                         f"{', '.join(available_models())}")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data_dir = out / "data" / f"{preset}-seed{seed}"
    if not (data_dir / "meta.json").is_file():
        console.print(f"[bold]1/5[/] generating the {preset!r} world (seed {seed}) ...")
        generate_world(preset, data_dir, seed=seed, overwrite=True, progress=True)
    ds = load_dataset(data_dir)
    console.print(
        f"    {ds.n_users:,} users, {ds.n_items:,} items, {ds.n_interactions:,} interactions "
        f"({time.perf_counter() - t0:.1f}s)"
    )

    runs: dict[str, Any] = {}
    runs_dir = out / "runs"
    for i, name in enumerate(chosen, start=1):
        console.print(f"[bold]2/5[/] training {name} ({i}/{len(chosen)}) ...")
        overrides = settings.get(name, []) + [f"train.seed={seed}", "progress=false"]
        runs[name] = train_run(name, ds, runs_dir / name, overrides=overrides, ks=DEMO_KS,
                               overwrite=True, console=console)

    system = None
    need = ("transformer", "lightgcn", "two-tower", "cnn-text")
    if all(n in runs for n in need):
        console.print("[bold]3/5[/] building the system ...")
        from streamrec.serve.system import build_system

        cfg = system_config(runs_dir.resolve(), quick)
        (out / "system.toml").write_text(_toml(cfg))
        system = build_system(out / "system.toml", out / "system", overwrite=True,
                              console=console)
    else:
        console.print(f"[yellow]3/5 no system: it needs {', '.join(need)}[/yellow]")

    console.print("[bold]4/5[/] judging the system and the models ...")
    judged = judge(runs, system, quick)
    console.print("[bold]5/5[/] writing the report ...")
    report = write_report(out / "report", judged, ds.info(), runs_dir, runs)
    print_leaderboard(judged["leaderboard"], console)
    print_click_table(judged["clicks"], console)
    console.print(f"demo finished in {time.perf_counter() - t0:.0f}s")
    if system is not None:
        user = ds.user_ids[0]
        console.print(f"serve it:  [bold]streamrec serve {out / 'system'}[/]  "
                      "(http://127.0.0.1:8000/)")
        console.print(f"or ask it: [bold]streamrec recommend {out / 'system'} --user {user} "
                      "-k 10 --explain[/]")
    return report


def judge(runs: dict[str, Any], system: Any, quick: bool) -> dict[str, Any]:
    """Leaderboard (every ranking model and the system), click table, and for the system its
    ablation, truth table, source recall and latency."""
    from streamrec.judge import (
        ablation,
        eval_users,
        latency,
        leaderboard,
        source_recall,
        truth_table,
    )
    from streamrec.models.base import ClickModel

    ranking = {n: r for n, r in runs.items() if not isinstance(r.model, ClickModel)}
    clicks = [{"model": n, "metrics": r.results["test"]["metrics"],
               "protocol": r.results["test"]["protocol"],
               "train_seconds": r.results["train_seconds"]}
              for n, r in runs.items() if isinstance(r.model, ClickModel)]
    out: dict[str, Any] = {"clicks": clicks, "ablation": None, "truth": None, "recall": None,
                           "latency": None}
    board = leaderboard({**ranking, **({"system": system} if system is not None else {})})
    for row in board:
        r = runs.get(row["name"])
        row["train_seconds"] = r.results.get("train_seconds") if r is not None else \
            system.config["system"].get("build_seconds")
        row["epochs"] = r.results.get("train", {}).get("epochs_run") if r is not None else None
    out["leaderboard"] = board
    if system is not None:
        sample = eval_users(system, max_users=500 if quick else 2000)
        out["ablation"] = ablation(system, users=sample)
        out["recall"] = source_recall(system, users=sample)
        out["truth"] = truth_table({n: ranking[n] for n in ranking} | {"system": system}, sample)
        out["latency"] = latency(system, 200 if quick else 1000)
        out["sample_users"] = int(len(sample))
    return out


def print_leaderboard(rows: list[dict[str, Any]], console: Any) -> None:
    """A rich table of the leaderboard, best NDCG@10 first."""
    from rich.table import Table

    if not rows:
        return
    proto = rows[0]["protocol"]
    table = Table(
        title=f"StreamRec leaderboard: {proto['dataset']}, split {proto['split']['method']}, "
        f"{proto['candidates']}, test"
    )
    table.add_column("model")
    keys = ["ndcg@10", "recall@10", "ndcg@20", "recall@20", "coverage@20"]
    for k in keys:
        table.add_column(k.replace("coverage", "cov"), justify="right")
    for row in sorted(rows, key=lambda r: -r["metrics"]["ndcg@10"]):
        name = f"[bold]{row['name']}[/]" if row["name"] == "system" else row["name"]
        table.add_row(name, *[f"{row['metrics'].get(k, float('nan')):.4f}" for k in keys])
    console.print(table)


def print_click_table(rows: list[dict[str, Any]], console: Any) -> None:
    """A rich table of the click-prediction models, best AUC first."""
    from rich.table import Table

    if not rows:
        return
    table = Table(title="Click prediction: held-out impressions")
    for col in ("model", "auc", "logloss", "oracle_auc", "gap", "train s"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for row in sorted(rows, key=lambda r: -r["metrics"]["auc"]):
        m = row["metrics"]
        oracle = m.get("oracle_auc")
        table.add_row(row["model"], f"{m['auc']:.4f}", f"{m['logloss']:.4f}",
                      f"{oracle:.4f}" if oracle is not None else "-",
                      f"{oracle - m['auc']:.4f}" if oracle is not None else "-",
                      f"{row['train_seconds']:.1f}")
    console.print(table)


def _bars(ax: Any, names: list[str], values: list[float], title: str,
          highlight: str = "system") -> None:
    colors = ["#d8603b" if n == highlight else "#3b7dd8" for n in names]
    ax.barh(names[::-1], values[::-1], color=colors[::-1])
    ax.set_title(title)
    for y, v in enumerate(values[::-1]):
        ax.text(v, y, f" {v:.3f}", va="center", fontsize=8)


def write_report(report_dir: Path, judged: dict[str, Any], data_info: dict[str, Any],
                 runs_dir: Path, runs: dict[str, Any]) -> Path:
    """``report.md`` with the tables above and PNG plots, and ``leaderboard.json``."""
    from matplotlib.figure import Figure

    report_dir.mkdir(parents=True, exist_ok=True)
    rows = sorted(judged["leaderboard"], key=lambda r: -r["metrics"]["ndcg@10"])
    (report_dir / "leaderboard.json").write_text(json.dumps(
        {"data": data_info, "rows": [{"model": r["name"], "task": "ranking", **r}
                                     for r in rows]
         + [{"task": "click", **c} for c in judged["clicks"]],
         "ablation": judged["ablation"], "truth": judged["truth"],
         "source_recall": judged["recall"], "latency": judged["latency"]},
        indent=2, default=str))
    lines = [
        "# StreamRec demo report",
        "",
        f"Data: `{data_info['name']}`: {data_info['users']:,} users, {data_info['items']:,} "
        f"items, {data_info['interactions']:,} interactions (density "
        f"{data_info['density']:.4%}).",
        "",
    ]
    if rows:
        p = rows[0]["protocol"]
        lines += [
            "## Leaderboard",
            "",
            f"Protocol: split `{json.dumps(p['split'])}`; stage `test`; candidates: "
            f"{p['candidates']}; masked: {p['masked']}; users evaluated: "
            f"{p['users_evaluated']:,}; K = {', '.join(map(str, p['ks']))}. The system is "
            "judged by the same evaluator: its candidates in their final order, every other "
            "item last.",
            "",
            "| model | NDCG@10 | Recall@10 | HR@10 | MRR@10 | NDCG@20 | Recall@20 | "
            "Coverage@20 | train s |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            m = r["metrics"]
            name = f"**{r['name']}**" if r["name"] == "system" else r["name"]
            ts = r.get("train_seconds")
            lines.append(
                f"| {name} | {m['ndcg@10']:.4f} | {m['recall@10']:.4f} | {m['hit@10']:.4f} | "
                f"{m['mrr@10']:.4f} | {m['ndcg@20']:.4f} | {m['recall@20']:.4f} | "
                f"{m['coverage@20']:.4f} | {ts:.1f} |" if ts is not None else
                f"| {name} | {m['ndcg@10']:.4f} | {m['recall@10']:.4f} | {m['hit@10']:.4f} | "
                f"{m['mrr@10']:.4f} | {m['ndcg@20']:.4f} | {m['recall@20']:.4f} | "
                f"{m['coverage@20']:.4f} | - |")
        fig = Figure(figsize=(13, 3.8))
        axes = fig.subplots(1, 2)
        names = [r["name"] for r in rows]
        for ax, key in zip(axes, ["ndcg@10", "recall@20"]):
            _bars(ax, names, [r["metrics"][key] for r in rows], key)
        fig.suptitle("Test metrics (full ranking, training items masked)")
        fig.tight_layout()
        fig.savefig(report_dir / "leaderboard.png", dpi=110)
        lines += ["", "![leaderboard](leaderboard.png)", ""]
    if judged["ablation"]:
        n = judged.get("sample_users")
        lines += ["## Ablation", "", f"The system with one part taken away ({n:,} test users "
                  "drawn at random; a removed source's candidates and rank feature are gone, "
                  "the ranker is not retrained).", "",
                  "| variant | NDCG@10 | Recall@10 | NDCG@20 |", "|---|---|---|---|"]
        for r in judged["ablation"]:
            m = r["metrics"]
            lines.append(f"| {r['name']} | {m['ndcg@10']:.4f} | {m['recall@10']:.4f} | "
                         f"{m['ndcg@20']:.4f} |")
        fig = Figure(figsize=(7, 3.6))
        ax = fig.subplots()
        _bars(ax, [r["name"] for r in judged["ablation"]],
              [r["metrics"]["ndcg@10"] for r in judged["ablation"]], "NDCG@10")
        fig.tight_layout()
        fig.savefig(report_dir / "ablation.png", dpi=110)
        lines += ["", "![ablation](ablation.png)", ""]
    if judged["recall"]:
        rec = judged["recall"]
        lines += ["## Sources", "", "How often the held-out item is among a source's candidates "
                  "at all: the ceiling the ranker cannot pass.", "",
                  "| source | quota | recall at quota |", "|---|---|---|"]
        for s, v in rec["sources"].items():
            lines.append(f"| {s} | {v['quota']} | {v['recall']:.4f} |")
        lines += [f"| all merged | {rec['candidates_per_user']} | {rec['merged']:.4f} |", ""]
    if judged["truth"]:
        lines += ["## Against the world's truth", "",
                  "The mean expected engagement (1 = click ... 5 = share) of each top 10 under "
                  "the world's true model, against the oracle's top 10 (the ten unconsumed "
                  "items of largest expected engagement), with intra-list diversity (true "
                  "latents), category coverage, novelty (-log2 popularity share) and catalogue "
                  "coverage.", "",
                  "| model | true engagement | oracle | ratio | ILD | category coverage | "
                  "novelty | catalogue coverage |", "|---|---|---|---|---|---|---|---|"]
        for r in sorted(judged["truth"], key=lambda r: -r.get("engagement_ratio", 0)):
            if "engagement_ratio" not in r:
                continue
            lines.append(f"| {r['name']} | {r['true_engagement']:.3f} | "
                         f"{r['oracle_engagement']:.3f} | {r['engagement_ratio']:.3f} | "
                         f"{r.get('ild', float('nan')):.3f} | {r['category_coverage']:.3f} | "
                         f"{r['novelty']:.2f} | {r['catalogue_coverage']:.3f} |")
        truthful = [r for r in judged["truth"] if "engagement_ratio" in r]
        if truthful:
            fig = Figure(figsize=(6, 4))
            ax = fig.subplots()
            for r in truthful:
                ax.scatter(r.get("ild", 0), r["engagement_ratio"],
                           color="#d8603b" if r["name"] == "system" else "#3b7dd8")
                ax.annotate(r["name"], (r.get("ild", 0), r["engagement_ratio"]), fontsize=8)
            ax.set_xlabel("intra-list diversity")
            ax.set_ylabel("true engagement / oracle")
            fig.tight_layout()
            fig.savefig(report_dir / "truth.png", dpi=110)
            lines += ["", "![truth](truth.png)", ""]
    if judged["latency"]:
        lat = judged["latency"]
        lines += ["## Latency", "", f"{lat['requests']} single requests (one user each), "
                  f"{lat['threads']} thread, in-process, {lat['n_items']:,} items; ms.", "",
                  "| stage | p50 | p95 | p99 |", "|---|---|---|---|"]
        for stage, v in lat["stages_ms"].items():
            lines.append(f"| {stage} | {v['p50']:.2f} | {v['p95']:.2f} | {v['p99']:.2f} |")
        stages = [s for s in lat["stages_ms"] if s != "total"]
        fig = Figure(figsize=(7, 3.6))
        ax = fig.subplots()
        _bars(ax, stages, [lat["stages_ms"][s]["p95"] for s in stages], "p95 per stage (ms)",
              highlight="")
        fig.tight_layout()
        fig.savefig(report_dir / "latency.png", dpi=110)
        lines += ["", "![latency](latency.png)", ""]
    clicks = sorted(judged["clicks"], key=lambda r: -r["metrics"]["auc"])
    if clicks:
        p = clicks[0]["protocol"]
        lines += [
            "## Click prediction",
            "",
            f"Protocol: {json.dumps({k: v for k, v in p.items() if k != 'features'})}. The "
            "oracle AUC ranks the held-out impressions by their true click probability: the "
            "best any model of the features can do.",
            "",
            "| model | AUC | log-loss | oracle AUC | gap | train s |",
            "|---|---|---|---|---|---|",
        ]
        for r in clicks:
            m = r["metrics"]
            oracle = m.get("oracle_auc")
            gap = f"{oracle - m['auc']:.4f}" if oracle is not None else "-"
            lines.append(f"| {r['model']} | {m['auc']:.4f} | {m['logloss']:.4f} | "
                         f"{'-' if oracle is None else f'{oracle:.4f}'} | {gap} | "
                         f"{r['train_seconds']:.1f} |")
        lines.append("")
    curves = [n for n in runs if (runs_dir / n / "training_curve.png").is_file()]
    if curves:
        lines += ["## Training curves", ""]
        for name in curves:
            target = report_dir / f"curve_{name}.png"
            shutil.copyfile(runs_dir / name / "training_curve.png", target)
            lines += [f"### {name}", "", f"![{name}]({target.name})", ""]
    report = report_dir / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report
