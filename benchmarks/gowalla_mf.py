"""Benchmark: MF-BPR on the Gowalla LightGCN split, against the published MF figure.

Protocol: Gowalla as preprocessed for NGCF/LightGCN (29,858 users, 40,981 items, 810,128
train / 217,242 test interactions; the given split, no validation part); full ranking over all
40,981 items with training items masked; Recall@20 and NDCG@20 (LightGCN definitions); the
final model is reported (no selection on test; the curve is for reporting only).
Published (LightGCN paper, Table 4): MF 0.1291 / 0.1109.

    python benchmarks/gowalla_mf.py [--data ../shared/data/gowalla] [--set epochs=40 ...]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from streamrec.data.dataset import load_dataset
from streamrec.data.importers import import_dataset
from streamrec.data.splits import make_split
from streamrec.run import train_run
from streamrec.train.config import build_configs

from common import TestCurve, write_result

HERE = Path(__file__).resolve().parent
PUBLISHED = {"recall@20": 0.1291, "ndcg@20": 0.1109}


def gowalla(src: Path) -> object:
    """Import the LightGCN files once into benchmarks/work/gowalla (git-ignored)."""
    cache = HERE / "work" / "gowalla"
    if not (cache / "meta.json").is_file():
        import_dataset("lightgcn", src, cache, overwrite=True)
    return load_dataset(cache)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=HERE.parent.parent / "shared/data/gowalla")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--every", type=int, default=5, help="test-curve period in epochs")
    args = ap.parse_args()
    t0 = time.perf_counter()
    ds = gowalla(args.data)
    load_s = time.perf_counter() - t0
    split = make_split(ds, "given")
    curve = TestCurve(ds, split, every=args.every, ks=(20,))
    model_cfg, train_cfg, _ = build_configs("mf", None, args.overrides)
    run_dir = HERE / "work" / "runs" / "gowalla-mf"
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    run = train_run("mf", ds, run_dir, overrides=args.overrides, ks=(20,), callbacks=[curve])
    test = run.results["test"]
    m = test["metrics"]
    train_s = curve.points[-1]["train_seconds"] if curve.points else run.results["train_seconds"]
    table = (
        "| model | Recall@20 | NDCG@20 | published R@20 / N@20 | train s | epochs |\n"
        "|---|---|---|---|---|---|\n"
        f"| mf (BPR) | {m['recall@20']:.4f} | {m['ndcg@20']:.4f} | "
        f"{PUBLISHED['recall@20']} / {PUBLISHED['ndcg@20']} | {train_s:.0f} | "
        f"{train_cfg.epochs} |"
    )
    _plot(curve.points, HERE / "results" / "gowalla_mf_curve.png")
    write_result(
        "gowalla_mf",
        {
            "protocol": {
                "data": "Gowalla, LightGCN split (given)",
                "split": test["protocol"]["split"],
                "candidates": test["protocol"]["candidates"],
                "masked": "train items",
                "ks": [20],
                "users_evaluated": test["protocol"]["users_evaluated"],
                "selection": "none: final model (curve on test for reporting only)",
            },
            "model_config": model_cfg.to_dict(),
            "train_config": train_cfg.to_dict(),
            "metrics": m,
            "published": PUBLISHED,
            "train_seconds_excluding_curve_evaluation": train_s,
            "wall_seconds_including_curve_evaluation": run.results["train_seconds"],
            "import_seconds": load_s,
            "curve": curve.points,
        },
        table,
        history="no-valid",
    )


def _plot(points: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(
        [p["train_seconds"] for p in points],
        [p["recall@20"] for p in points],
        "o-",
        label="MF-BPR (StreamRec)",
    )
    ax.axhline(PUBLISHED["recall@20"], color="grey", ls="--", label="published MF")
    ax.set_xlabel("training seconds (2-core CPU)")
    ax.set_ylabel("test Recall@20")
    ax.set_title("Gowalla: Recall@20 against training time")
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
