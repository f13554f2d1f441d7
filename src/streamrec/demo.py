"""The main job: generate the demo world, train every model, compare them, write a report.

``streamrec demo`` (or :func:`run_demo` from Python) writes into one directory::

    data/                the generated world
    runs/MODEL/          one run directory per model
    report/report.md     leaderboard with the protocol, plots, per-model notes
    report/*.png         metric bars and training curves
    report/leaderboard.json
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Models of the demo in display order, with settings sized for minutes on 2 CPU cores.
DEMO_MODELS: dict[str, list[str]] = {
    "pop": [],
    "mf": ["epochs=20", "patience=3"],
    "transformer": ["epochs=8", "lr=3e-3", "batch_size=512"],
    "logreg": ["epochs=4", "batch_size=1024", "lr=1e-2"],
    "mlp": ["epochs=6", "batch_size=512", "patience=2", "diagnostics=false"],
}
DEMO_KS = (10, 20)


def run_demo(
    out: str | Path,
    preset: str = "demo",
    seed: int = 0,
    models: Sequence[str] | None = None,
    console: Any = None,
) -> Path:
    """Run the demo end to end; returns the path of ``report.md``."""
    from rich.console import Console

    from streamrec.data.dataset import load_dataset
    from streamrec.data.world import generate_world
    from streamrec.models import available_models
    from streamrec.run import train_run

    console = console or Console(stderr=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = list(models) if models else [m for m in DEMO_MODELS if m in available_models()]
    unknown = [m for m in chosen if m not in available_models()]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; available: {available_models()}")

    t0 = time.perf_counter()
    data_dir = out / "data" / f"{preset}-seed{seed}"
    if not (data_dir / "meta.json").is_file():
        console.print(f"[bold]1/3[/] generating the {preset!r} world (seed {seed}) ...")
        generate_world(preset, data_dir, seed=seed, overwrite=True, progress=True)
    ds = load_dataset(data_dir)
    console.print(
        f"    {ds.n_users:,} users, {ds.n_items:,} items, {ds.n_interactions:,} interactions "
        f"({time.perf_counter() - t0:.1f}s)"
    )

    rows: list[dict[str, Any]] = []
    runs_dir = out / "runs"
    for i, name in enumerate(chosen, start=1):
        console.print(f"[bold]2/3[/] training {name} ({i}/{len(chosen)}) ...")
        run_dir = runs_dir / name
        if run_dir.exists():
            import shutil

            shutil.rmtree(run_dir)
        overrides = DEMO_MODELS.get(name, []) + [f"seed={seed}"]
        run = train_run(name, ds, run_dir, overrides=overrides, ks=DEMO_KS, console=console)
        test = run.results["test"]
        rows.append(
            {
                "model": name,
                "task": run.model.task,
                "metrics": test["metrics"],
                "train_seconds": run.results["train_seconds"],
                "epochs": run.results["train"].get("epochs_run"),
                "protocol": test["protocol"],
                "evaluation": test["evaluation"],
            }
        )
        shown = ", ".join(
            f"{k} {test['metrics'][k]:.4f}"
            for k in ("ndcg@10", "recall@20", "auc", "oracle_auc")
            if k in test["metrics"]
        )
        console.print(f"    {name}: {shown}, {run.results['train_seconds']:.1f}s")

    console.print("[bold]3/3[/] writing the report ...")
    report = write_report(out / "report", rows, ds.info(), runs_dir)
    print_leaderboard([r for r in rows if r["task"] == "ranking"], console)
    print_click_table([r for r in rows if r["task"] == "click"], console)
    console.print(f"demo finished in {time.perf_counter() - t0:.0f}s")
    return report


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
    table.add_column("train s", justify="right")
    for row in sorted(rows, key=lambda r: -r["metrics"]["ndcg@10"]):
        table.add_row(
            row["model"],
            *[f"{row['metrics'].get(k, float('nan')):.4f}" for k in keys],
            f"{row['train_seconds']:.1f}",
        )
    console.print(table)


def print_click_table(rows: list[dict[str, Any]], console: Any) -> None:
    """A rich table of the click-prediction models, best AUC first."""
    from rich.table import Table

    if not rows:
        return
    proto = rows[0]["protocol"]
    table = Table(title=f"Click prediction: {proto.get('dataset', '')}, held-out impressions")
    for col in ("model", "auc", "logloss", "oracle_auc", "gap", "train s"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for row in sorted(rows, key=lambda r: -r["metrics"]["auc"]):
        m = row["metrics"]
        oracle = m.get("oracle_auc")
        table.add_row(
            row["model"],
            f"{m['auc']:.4f}",
            f"{m['logloss']:.4f}",
            f"{oracle:.4f}" if oracle is not None else "-",
            f"{oracle - m['auc']:.4f}" if oracle is not None else "-",
            f"{row['train_seconds']:.1f}",
        )
    console.print(table)


def write_report(
    report_dir: Path, rows: list[dict[str, Any]], data_info: dict[str, Any], runs_dir: Path
) -> Path:
    """Markdown report with the leaderboard, its protocol and PNG plots."""
    from matplotlib.figure import Figure

    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "leaderboard.json").write_text(
        json.dumps({"data": data_info, "rows": rows}, indent=2, default=str)
    )
    clicks = sorted((r for r in rows if r["task"] == "click"), key=lambda r: -r["metrics"]["auc"])
    rows = [r for r in rows if r["task"] == "ranking"]
    ordered = sorted(rows, key=lambda r: -r["metrics"]["ndcg@10"])
    names = [r["model"] for r in ordered]
    fig = Figure(figsize=(13, 3.8))
    axes = fig.subplots(1, 3)
    for ax, key in zip(axes, ["ndcg@10", "recall@20", "coverage@20"]):
        vals = [r["metrics"].get(key, 0.0) for r in ordered]
        ax.barh(names[::-1], vals[::-1], color="#3b7dd8")
        ax.set_title(key)
        for y, v in enumerate(vals[::-1]):
            ax.text(v, y, f" {v:.3f}", va="center", fontsize=8)
    fig.suptitle("Test metrics (full ranking, training items masked)")
    fig.tight_layout()
    fig.savefig(report_dir / "leaderboard.png", dpi=110)

    lines = [
        "# StreamRec demo report",
        "",
        f"Data: `{data_info['name']}`: {data_info['users']:,} users, {data_info['items']:,} items, "
        f"{data_info['interactions']:,} interactions (density {data_info['density']:.4%}).",
        "",
    ]
    if ordered:
        p = ordered[0]["protocol"]
        lines += [
            f"Protocol: split `{json.dumps(p['split'])}`; stage `test`; candidates: "
            f"{p['candidates']}; masked: {p['masked']}; users evaluated: "
            f"{p['users_evaluated']:,}; K = {', '.join(map(str, p['ks']))}.",
            "",
            "| model | NDCG@10 | Recall@10 | HR@10 | MRR@10 | NDCG@20 | Recall@20 | "
            "Coverage@20 | train s | epochs |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in ordered:
            m = r["metrics"]
            lines.append(
                f"| {r['model']} | {m['ndcg@10']:.4f} | {m['recall@10']:.4f} | {m['hit@10']:.4f} | "
                f"{m['mrr@10']:.4f} | {m['ndcg@20']:.4f} | {m['recall@20']:.4f} | "
                f"{m['coverage@20']:.4f} | {r['train_seconds']:.1f} | {r['epochs'] or '-'} |"
            )
        lines += ["", "![leaderboard](leaderboard.png)", ""]
    if clicks:
        p = clicks[0]["protocol"]
        lines += [
            "## Click prediction",
            "",
            f"Protocol: {json.dumps({k: v for k, v in p.items() if k != 'features'})}.",
            "The oracle AUC ranks the held-out impressions by their true click probability: "
            "the best any model of the features can do.",
            "",
            "| model | AUC | log-loss | oracle AUC | gap | train s |",
            "|---|---|---|---|---|---|",
        ]
        for r in clicks:
            m = r["metrics"]
            oracle = m.get("oracle_auc")
            gap = f"{oracle - m['auc']:.4f}" if oracle is not None else "-"
            lines.append(
                f"| {r['model']} | {m['auc']:.4f} | {m['logloss']:.4f} | "
                f"{oracle if oracle is None else f'{oracle:.4f}'} | {gap} | "
                f"{r['train_seconds']:.1f} |"
            )
        lines.append("")
    if ordered or clicks:
        lines += ["## Training curves", ""]
        for r in ordered + clicks:
            curve = runs_dir / r["model"] / "training_curve.png"
            if curve.is_file():
                target = report_dir / f"curve_{r['model']}.png"
                target.write_bytes(curve.read_bytes())
                lines += [f"### {r['model']}", "", f"![{r['model']}]({target.name})", ""]
    report = report_dir / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report
