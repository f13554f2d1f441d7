"""Data-parallel training and sharded evaluation on torch.distributed (gloo, 2 CPU processes).

Workers are spawned with ``torch.multiprocessing`` (the Python API) or launched by the CLI
through torchrun; every launch has a bounded timeout and its own free port.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from streamrec.models import models_where

WORLD = 2
TIMEOUT = 120
#: small settings (speed only) of the models trained on 2 processes
FAST: dict[str, list[str]] = {
    "mf": ["dim=8"],
    "logreg": [],
    "mlp": ["hidden=[8]"],
    "mult-vae": ["hidden=16", "latent=4"],
    "mult-dae": ["hidden=16", "latent=4"],
    "lightgcn": ["dim=8"],
    "gcn": ["dim=8"],
    "graphsage": ["dim=8"],
    "gat": ["dim=8"],
    "cnn-text": ["dim=8", "n_filters=4", "token_dim=8"],
    "gru": ["d_model=8", "hidden=8"],
    "lstm": ["d_model=8", "hidden=8"],
    "transformer": ["d_model=8", "n_heads=2"],
    "two-tower": ["text_encoder=cnn", "dim=8", "hidden=16", "id_dim=4", "category_dim=4",
                  "cnn_filters=4", "cnn_token_dim=8", "history_len=4"],
    "diffrec": ["hidden=[8]"],
    "l-diffrec": ["hidden=[8]", "latent_dim=4", "svd_dim=4"],
    "cfgan": ["g_hidden=[8]", "d_hidden=[4]", "d_steps=1", "g_steps=1"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, port: int, fn_name: str, args: tuple) -> None:
    """One rank: join a gloo group on ``port`` (the env:// variables torchrun would set) and
    run ``globals()[fn_name](rank, *args)``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from streamrec.train.distributed import shutdown

    try:
        globals()[fn_name](rank, *args)
    except BaseException:
        shutdown(wait=False)
        raise
    shutdown()


def spawn(fn_name: str, *args: Any, timeout: float = TIMEOUT) -> None:
    """Run ``fn_name(rank, *args)`` on 2 spawned ranks; fail on an error or after
    ``timeout`` seconds."""
    import torch.multiprocessing as mp

    ctx = mp.start_processes(_worker, args=(free_port(), fn_name, args), nprocs=WORLD,
                             join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"{fn_name} on {WORLD} processes did not finish in {timeout}s")


def params(run_dir: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(run_dir / "model.safetensors"))


# ================================================================== 1. DDP == one process
MF_OPTS = ["dim=8", "epochs=2", "batch_size=256", "eval_every=100", "lr=0.01"]


def _train_ranks(rank: int, data: str, out: str, model: str, opts: list[str]) -> None:
    from streamrec.run import train_run

    train_run(model, data, out, overrides=opts, progress=False, distributed=True)


def test_two_processes_take_the_steps_of_one(tiny_dir: Path, tmp_path: Path) -> None:
    """2 processes x B/2 (global batch B) reach the parameters of 1 process x B after k steps,
    launched by the CLI (`--nproc 2`, torchrun)."""
    from streamrec.run import train_run

    one = train_run("mf", tiny_dir, tmp_path / "one", overrides=MF_OPTS, progress=False)
    two = tmp_path / "two"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-m", "streamrec.cli", "train", "mf", "--data", str(tiny_dir),
         "--out", str(two), "--quiet", "--nproc", "2", *[a for o in MF_OPTS for a in ("--set", o)]],
        capture_output=True, text=True, timeout=TIMEOUT, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = params(one.path), params(two)
    assert set(a) == set(b)
    steps = json.loads((two / "results.json").read_text())["train"]
    assert steps["world_size"] == 2 and steps["epochs_run"] == 2
    for k in a:
        assert np.abs(a[k]).max() > 0
        np.testing.assert_allclose(b[k], a[k], rtol=1e-4, atol=1e-6, err_msg=k)
    # the trained model moved away from its start, so the comparison is not vacuous
    cfg = json.loads((two / "config.json").read_text())
    assert cfg["train_config"]["batch_size"] == 256
    r1 = json.loads((one.path / "results.json").read_text())["test"]["metrics"]
    r2 = json.loads((two / "results.json").read_text())["test"]["metrics"]
    assert r2 == pytest.approx(r1, abs=1e-3)
    lines = [json.loads(x) for x in (two / "metrics.jsonl").read_text().splitlines()]
    ones = [json.loads(x) for x in (one.path / "metrics.jsonl").read_text().splitlines()]
    assert [x["loss"] for x in lines] == pytest.approx([x["loss"] for x in ones], rel=1e-4)


#: models whose loss is a deterministic function of the batch in eval mode (no dropout, no
#: draws inside the loss): their shares' gradients can be compared with the batch's exactly
DETERMINISTIC = ["mf", "lightgcn", "gru", "transformer", "two-tower"]


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_shares_gradients_average_to_the_batch_gradient(tiny, name: str) -> None:
    """What DDP computes (the row-weighted mean of the shares' gradients, each share's loss a
    mean over its rows) is the whole batch's gradient: ``split_batch`` loses nothing, shared
    candidates included (the two-tower's in-batch negatives)."""
    from streamrec.data.splits import make_split
    from streamrec.models import get_model_class
    from streamrec.train import move_to_device
    from streamrec.train.config import build_configs

    train = make_split(tiny, "loo").train(tiny)
    model_cfg, _, _ = build_configs(name, overrides=FAST.get(name, []))
    torch.manual_seed(0)
    model = get_model_class(name)(model_cfg, train).eval()  # eval: no dropout
    batch = move_to_device(next(iter(model.batches(train, 64, np.random.default_rng(0)))),
                           model.device)

    def grads(b: Any) -> list[torch.Tensor]:
        model.zero_grad()
        model.loss(b).backward()
        return [torch.zeros_like(p) if p.grad is None else p.grad.clone()
                for p in model.parameters()]

    whole = grads(batch)
    shares = model.split_batch(batch, 3)
    rows = sum(n for _, n in shares)
    mixed = [torch.zeros_like(g) for g in whole]
    for share, n in shares:
        for m, g in zip(mixed, grads(share), strict=True):
            m.add_(g, alpha=n / rows)
    assert any(g.abs().max() > 0 for g in whole)
    for m, g in zip(mixed, whole, strict=True):
        torch.testing.assert_close(m, g, rtol=1e-4, atol=1e-6)


def test_nproc_errors_are_one_line(tiny_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from streamrec.cli import app

    r = CliRunner().invoke(app, ["train", "pop", "--data", str(tiny_dir), "--out",
                                 str(tmp_path / "p"), "--nproc", "2"])
    assert r.exit_code != 0
    assert "error:" in r.output and "closed form" in r.output
    assert len(r.output.strip().splitlines()) == 1
    r = CliRunner().invoke(app, ["train", "mf", "--data", str(tiny_dir), "--out",
                                 str(tmp_path / "p"), "--nproc", "2", "--nnodes", "2"])
    assert r.exit_code != 0 and "--rdzv" in r.output
    assert len(r.output.strip().splitlines()) == 1


# ================================================================== 2. sharded evaluation
def _evaluate_ranks(rank: int, data: str, run_dir: str, out: str) -> None:
    from streamrec.eval.evaluator import evaluate_model
    from streamrec.run import load_run
    from streamrec.train.distributed import init_from_env

    dist = init_from_env("cpu")
    run = load_run(run_dir)
    res = {stage: evaluate_model(run.model, run.dataset, run.split, stage, (5, 10),
                                 batch_size=7, dist=dist)
           for stage in ("valid", "test")}
    Path(out, f"rank{rank}.json").write_text(json.dumps(res))


def test_sharded_evaluation_equals_one_process(tiny_dir: Path, tmp_path: Path) -> None:
    from streamrec.eval.evaluator import evaluate_model
    from streamrec.run import train_run

    run = train_run("mf", tiny_dir, tmp_path / "run", overrides=["dim=8", "epochs=1"],
                    progress=False)
    spawn("_evaluate_ranks", str(tiny_dir), str(run.path), str(tmp_path))
    for stage in ("valid", "test"):
        alone = evaluate_model(run.model, run.dataset, run.split, stage, (5, 10), batch_size=7)
        for rank in range(WORLD):
            shard = json.loads((tmp_path / f"rank{rank}.json").read_text())[stage]
            assert shard["metrics"] == alone["metrics"]  # bit for bit
            assert shard["protocol"]["shards"] == WORLD
            assert shard["protocol"]["users_evaluated"] == alone["protocol"]["users_evaluated"]


# ================================================================== 3. kill a rank, resume
def _train_and_die(rank: int, data: str, out: str, opts: list[str], die_rank: int) -> None:
    """Train; rank ``die_rank`` is killed (SIGKILL) at the end of the second epoch."""
    from streamrec.run import train_run
    from streamrec.train import Callback

    class Die(Callback):
        def on_epoch_end(self, trainer: Any, epoch: int, logs: dict) -> None:
            if epoch == 1 and rank == die_rank:
                os.kill(os.getpid(), signal.SIGKILL)

    train_run("mf", data, out, overrides=opts, progress=False, distributed=True,
              callbacks=[Die()])


def _resume_ranks(rank: int, data: str, out: str) -> None:
    from streamrec.run import train_run

    train_run("mf", data, out, resume=True, progress=False, distributed=True)


@pytest.mark.parametrize("die_rank", [1])
def test_killed_rank_then_resume_gives_the_uninterrupted_result(
        tiny_dir: Path, tmp_path: Path, die_rank: int) -> None:
    import torch.multiprocessing as mp

    opts = ["dim=8", "epochs=4", "batch_size=256", "eval_every=1"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    spawn("_train_ranks", str(tiny_dir), str(full), "mf", opts)
    ctx = mp.start_processes(_worker, args=(free_port(), "_train_and_die",
                                            (str(tiny_dir), str(cut), opts, die_rank)),
                             nprocs=WORLD, join=False, start_method="spawn")
    deadline = time.monotonic() + TIMEOUT
    try:
        with pytest.raises((mp.ProcessExitedException, mp.ProcessRaisedException)):
            while not ctx.join(timeout=1):
                assert time.monotonic() < deadline, "the surviving rank did not stop"
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
    assert not (cut / "results.json").exists()
    done = (cut / "metrics.jsonl").read_text().splitlines()
    assert 1 <= len(done) < 4  # it stopped part-way
    spawn("_resume_ranks", str(tiny_dir), str(cut))
    a, b = params(full), params(cut)
    for k in a:
        np.testing.assert_array_equal(b[k], a[k], err_msg=k)
    ra = json.loads((full / "results.json").read_text())
    rb = json.loads((cut / "results.json").read_text())
    assert rb["test"]["metrics"] == ra["test"]["metrics"]
    assert rb["train"]["best_epoch"] == ra["train"]["best_epoch"]


# ================================================================== 4. every trainable model
def _trainable() -> list[str]:
    return models_where(lambda cls: cls.trainable)


def _train_every_model(rank: int, data: str, root: str, names: list[str]) -> None:
    """Train each model for one epoch on 2 ranks; record per rank a checksum of the parameters
    (DDP keeps the ranks' replicas equal; buffers such as BatchNorm statistics are each rank's
    own, and rank 0's are saved) or the error."""
    import traceback

    from streamrec.run import train_run

    report = {}
    for name in names:
        try:
            run = train_run(name, data, Path(root, name), progress=False, distributed=True,
                            overrides=[*FAST.get(name, []), "epochs=1"])
            report[name] = {"sum": [float(v.detach().double().sum())
                                    for v in run.model.parameters()]}
        except Exception as e:  # noqa: BLE001 - reported per model by the test
            report[name] = {"error": f"{type(e).__name__}: {e}",
                            "trace": traceback.format_exc()[-1500:]}
    Path(root, f"rank{rank}.json").write_text(json.dumps(report))


@pytest.fixture(scope="module")
def every_model(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("every")
    spawn("_train_every_model", str(tiny_dir), str(root), _trainable(), timeout=300)
    return {r: json.loads((root / f"rank{r}.json").read_text()) for r in range(WORLD)} | {
        "root": root}


@pytest.mark.parametrize("name", _trainable())
def test_every_trainable_model_trains_on_two_processes(every_model: dict, name: str) -> None:
    r0, r1 = every_model[0][name], every_model[1][name]
    assert "error" not in r0, r0
    assert r0["sum"] == pytest.approx(r1["sum"], rel=1e-6, abs=1e-6)  # replicas stay equal
    run_dir = every_model["root"] / name
    results = json.loads((run_dir / "results.json").read_text())
    assert results["train"]["world_size"] == WORLD
    assert (run_dir / "model.safetensors").is_file()


# ================================================================== 5. a row-sharded table
def _sharded_table_ranks(rank: int, out: str) -> None:
    from streamrec.train.distributed import init_from_env
    from streamrec.train.model_parallel import RowShardedEmbedding

    init_from_env("cpu")
    emb = RowShardedEmbedding(11, 4, rank, WORLD, seed=3)
    opt = torch.optim.SGD(emb.parameters(), lr=0.5)
    ids = torch.tensor([[0, 5, 10, 5], [6, 1, 1, 9]][rank])
    for _ in range(2):
        opt.zero_grad()
        vec = emb(ids)
        loss = (vec * torch.arange(1.0, 5.0)).sum() ** 2 / 100
        loss.backward()
        opt.step()
    torch.save({"lo": emb.lo, "weight": emb.weight.detach(), "vec": emb(ids).detach()},
               Path(out, f"rank{rank}.pt"))


def test_row_sharded_embedding_trains_as_one_table(tmp_path: Path) -> None:
    """Two ranks, each owning half of the rows, take the steps of one full table fed both
    ranks' ids (the loss is a sum over ranks, as the all-reduce of the gradients is)."""
    from streamrec.train.model_parallel import RowShardedEmbedding

    spawn("_sharded_table_ranks", str(tmp_path))
    full = torch.nn.Parameter(torch.randn(11, 4, generator=torch.Generator().manual_seed(3))
                              * 0.1)
    opt = torch.optim.SGD([full], lr=0.5)
    ids = [torch.tensor([0, 5, 10, 5]), torch.tensor([6, 1, 1, 9])]
    for _ in range(2):
        opt.zero_grad()
        loss = sum(((full[i] * torch.arange(1.0, 5.0)).sum() ** 2 / 100) for i in ids)
        loss.backward()
        opt.step()
    shards = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    assert [s["lo"] for s in shards] == [0, 6]
    torch.testing.assert_close(torch.cat([s["weight"] for s in shards]), full.detach())
    for r in range(WORLD):
        torch.testing.assert_close(shards[r]["vec"], full.detach()[ids[r]])
    assert not torch.equal(full.detach(), torch.randn(
        11, 4, generator=torch.Generator().manual_seed(3)) * 0.1)  # it did move
    with pytest.raises(ValueError, match="cannot be split"):
        RowShardedEmbedding(1, 4, 0, 2)
