"""Benchmark: generating the synthetic StreamRec world, up to the 1M-user ``platform`` preset.

Protocol: each preset is generated with ``generate_world(preset, out, seed)`` in a fresh child
process (so the peak memory of one preset is not inflated by another's); the child measures
the wall time of the call and its peak resident memory (``getrusage(RUSAGE_SELF).ru_maxrss``,
which includes the interpreter and numpy/pyarrow). Data are written to a temporary directory
(deleted afterwards) unless ``--out`` is given. Targets: m0 and demo in a few seconds, m5 in
well under a minute, platform (1M users, 200k items, ~40M interactions) within ~10 minutes
and a few GB of memory.

    python benchmarks/world_platform.py                      # m0, m5, demo, platform
    python benchmarks/world_platform.py --preset demo --preset m0 --seed 1
    python benchmarks/world_platform.py --preset platform --out /data/worlds
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import write_result

DEFAULT_PRESETS = ("m0", "m5", "demo", "platform")
TARGETS_S = {"tiny": 2.0, "m0": 10.0, "demo": 10.0, "m5": 60.0, "platform": 600.0}


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run_one(preset: str, seed: int, out: Path) -> dict:
    """Generate one preset in this process; return the measurements."""
    import pyarrow.parquet as pq

    from streamrec.data.world import generate_world

    t0 = time.perf_counter()
    generate_world(preset, out, seed=seed, overwrite=True, progress=True)
    seconds = time.perf_counter() - t0
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux
    meta = json.loads((out / "meta.json").read_text())
    impressions = 0
    if (out / "impressions.parquet").is_file():
        impressions = pq.ParquetFile(out / "impressions.parquet").metadata.num_rows
    stats = meta["world"].get("stats", {})
    return {
        "preset": preset,
        "seed": seed,
        "users": meta["n_users"],
        "items": meta["n_items"],
        "interactions": meta["n_interactions"],
        "impressions": impressions,
        "seconds": seconds,
        "peak_rss_gb": peak_gb,
        "disk_mb": _dir_bytes(out) / 1024**2,
        "chunk_users": meta["world"]["config"]["chunk_users"],
        "top3_share": stats.get("top3_share"),
        "click_rate": stats.get("click_rate"),
        "oracle_auc": stats.get("oracle_auc"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", action="append", help="preset to time (repeatable)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="keep the worlds in OUT/<preset>-seed<seed>")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    presets = args.preset or list(DEFAULT_PRESETS)

    if args.child:  # one preset, measured in this process; JSON on the last stdout line
        res = run_one(presets[0], args.seed, args.out)
        print(json.dumps(res), flush=True)
        return

    rows = []
    for preset in presets:
        tmp = None
        if args.out is None:
            tmp = Path(tempfile.mkdtemp(prefix="world-bench-"))
            out = tmp / f"{preset}-seed{args.seed}"
        else:
            out = args.out / f"{preset}-seed{args.seed}"
        cmd = [sys.executable, __file__, "--child", "--preset", preset, "--seed", str(args.seed),
               "--out", str(out)]  # fmt: skip
        try:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        res["target_seconds"] = TARGETS_S.get(preset)
        rows.append(res)
        print(
            f"{preset}: {res['interactions']:,} interactions in {res['seconds']:.1f}s, "
            f"peak {res['peak_rss_gb']:.2f} GB",
            file=sys.stderr,
            flush=True,
        )

    cores = os.cpu_count()
    lines = [
        "| preset | seed | cores | users | items | interactions | impressions | time s "
        "| peak memory GB | disk MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['preset']} | {r['seed']} | {cores} | {r['users']:,} | {r['items']:,} "
            f"| {r['interactions']:,} | {r['impressions']:,} | {r['seconds']:.1f} "
            f"| {r['peak_rss_gb']:.2f} | {r['disk_mb']:.0f} |"
        )
    write_result(
        "world_platform",
        {
            "protocol": {
                "what": "generate_world(preset, out, seed) written to local disk, one child "
                "process per preset; wall time of the call; peak RSS of the child",
                "presets": presets,
                "seed": args.seed,
                "cores": cores,
            },
            "results": rows,
        },
        "\n".join(lines),
        history="none",
    )


if __name__ == "__main__":
    main()
