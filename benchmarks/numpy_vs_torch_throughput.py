"""Benchmark: training throughput of the numpy MLP against the torch MLP.

Protocol: the same architecture, 20 -> 512 -> 256 -> 128 -> 64 -> 1 with ReLU (the book's
click MLP), float32, the same initial weights (the numpy net, copied with ``to_torch``), the
same random standardised inputs and clicks, one training step = forward + BCE-with-logits +
backward + Adam(1e-3) update. For each batch size: a warm-up of 5 steps, then ``--steps``
steps timed, ``--repeats`` times; the best repeat gives samples per second (the machine is
shared, so the best is the least disturbed). Threads: torch uses ``torch.set_num_threads(T)``
and numpy's OpenBLAS ``threadpoolctl.threadpool_limits(T)`` with ``T = --threads`` (default:
all cores). Target: numpy at least 0.7x torch.

    python benchmarks/numpy_vs_torch_throughput.py [--batch-sizes 256 1024 4096 --threads 2]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from streamrec import nn_numpy as nnp

from common import write_result

HIDDEN = [512, 256, 128, 64]
N_FEATURES = 20


def numpy_step_fn(net: nnp.Sequential, opt: nnp.Optimizer, loss_fn: nnp.BCEWithLogitsLoss):
    def step(x: np.ndarray, y: np.ndarray) -> float:
        logits = net.forward(x, training=True)
        loss = loss_fn.forward(logits, y)
        opt.zero_grad()
        net.backward(loss_fn.backward(), need_input_grad=False)
        opt.step()
        return loss

    return step


def torch_step_fn(net: torch.nn.Module, opt: torch.optim.Optimizer):
    lossf = torch.nn.BCEWithLogitsLoss()

    def step(x: torch.Tensor, y: torch.Tensor) -> float:
        opt.zero_grad(set_to_none=True)
        loss = lossf(net(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


def time_steps(step, batches: list, steps: int, repeats: int) -> list[float]:
    for b in batches[:5]:
        step(*b)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(steps):
            step(*batches[i % len(batches)])
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024, 4096])
    ap.add_argument("--samples", type=int, default=200_000,
                    help="samples per timed repeat (steps = samples / batch size)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    from threadpoolctl import threadpool_info, threadpool_limits

    torch.set_num_threads(args.threads)
    rows = []
    with threadpool_limits(limits=args.threads, user_api="blas"):
        blas = [{k: i.get(k) for k in ("internal_api", "num_threads", "version")}
                for i in threadpool_info() if i.get("user_api") == "blas"]
        for bs in args.batch_sizes:
            steps = max(10, args.samples // bs)
            rng = np.random.default_rng(0)
            xs = rng.standard_normal((8, bs, N_FEATURES)).astype(np.float32)
            ys = (rng.random((8, bs, 1)) < 0.2).astype(np.float32)
            net = nnp.build_mlp(N_FEATURES, HIDDEN, rng=np.random.default_rng(0))
            tnet = nnp.to_torch(net)
            np_step = numpy_step_fn(net, nnp.Adam(net.parameters(), lr=1e-3),
                                    nnp.BCEWithLogitsLoss())
            t_step = torch_step_fn(tnet, torch.optim.Adam(tnet.parameters(), lr=1e-3))
            np_batches = list(zip(xs, ys))
            t_batches = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in np_batches]
            # interleave the two so that a burst of load on the shared machine hits both
            np_times, t_times = [], []
            for _ in range(args.repeats):
                np_times += time_steps(np_step, np_batches, steps, 1)
                t_times += time_steps(t_step, t_batches, steps, 1)
            np_sps = steps * bs / min(np_times)
            t_sps = steps * bs / min(t_times)
            rows.append({
                "batch_size": bs, "steps": steps,
                "numpy_samples_per_s": np_sps, "torch_samples_per_s": t_sps,
                "ratio": np_sps / t_sps,
                "numpy_median_samples_per_s": steps * bs / float(np.median(np_times)),
                "torch_median_samples_per_s": steps * bs / float(np.median(t_times)),
            })
            print(rows[-1], flush=True)
    table = (
        "| batch | numpy samples/s | torch samples/s | numpy / torch | target |\n"
        "|---|---|---|---|---|\n"
        + "".join(f"| {r['batch_size']} | {r['numpy_samples_per_s']:,.0f} | "
                  f"{r['torch_samples_per_s']:,.0f} | {r['ratio']:.2f}x | >= 0.7x |\n"
                  for r in rows)
        + f"\nMLP 20-512-256-128-64-1 ReLU, float32, Adam step; best of {args.repeats}; "
        f"{args.threads} threads for torch and OpenBLAS.\n"
    )
    write_result("numpy_vs_torch_throughput", {
        "protocol": {
            "architecture": [N_FEATURES, *HIDDEN, 1], "activation": "relu", "dtype": "float32",
            "step": "forward + BCEWithLogits + backward + Adam(1e-3)",
            "timing": f"best of {args.repeats} repeats of ~{args.samples:,} samples, after 5 "
                      "warm-up steps; numpy and torch interleaved",
            "threads": args.threads, "numpy_blas": blas,
            "target": "numpy >= 0.7x torch samples/s",
        },
        "results": rows,
        "min_ratio": min(r["ratio"] for r in rows),
    }, table, history="none")


if __name__ == "__main__":
    main()
