"""Run-directory files of the training loop: weights, checkpoints, RNG state, metrics.

* ``model.safetensors`` — the chosen weights (:func:`save_weights`, atomic);
* ``checkpoint.pt`` — everything needed to continue exactly (:func:`save_checkpoint`, atomic;
  :func:`load_checkpoint` reads it back, tensors only, and names the file when it is damaged);
* the global RNG states of python, numpy and torch (:func:`get_rng_states` /
  :func:`set_rng_states`), part of every checkpoint;
* ``metrics.jsonl`` — one JSON line per epoch (:func:`json_line`, :func:`read_metrics`).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamrec.common import json_default

CHECKPOINT_FORMAT = "streamrec-checkpoint/1"
CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.jsonl"
WEIGHTS_FILE = "model.safetensors"


class DamagedFileError(ValueError):
    """A run file exists but cannot be read (truncated, empty or not what it should be)."""


def cpu_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the model's tensors: contiguous, each with its own storage (so tied /
    shared weights save to safetensors), detached from the live parameters."""
    out: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        if isinstance(v, torch.Tensor):
            out[k] = v.detach().to("cpu", copy=True).contiguous()
    return out


def save_weights(state: Mapping[str, torch.Tensor], path: str | Path,
                 metadata: Mapping[str, str] | None = None) -> Path:
    """Write a state dict to a safetensors file atomically (tmp file, then ``os.replace``)."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for k, v in state.items():
        t = v.detach()
        if t.device.type != "cpu":
            t = t.to("cpu")
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen or not t.is_contiguous():
            t = t.clone().contiguous()
        if t.numel():
            seen.add(ptr)
        tensors[k] = t
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata=dict(metadata or {"format": "pt"}))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """``torch.save`` to ``path`` atomically: a temporary sibling, fsync, then ``os.replace``,
    so an interruption leaves the previous checkpoint intact."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors on the CPU).

    Loaded with ``weights_only=True``: a checkpoint holds only tensors and plain Python data.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    damaged = (f"{path} is damaged (empty, truncated or not a StreamRec checkpoint); the run "
               "cannot be resumed: retrain it with --overwrite")
    if path.stat().st_size == 0:
        raise DamagedFileError(damaged)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - EOF, unpickling, zip and runtime errors: all damage
        raise DamagedFileError(damaged) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise DamagedFileError(damaged)
    return state


def get_rng_states() -> dict[str, Any]:
    """The global RNG states: python ``random``, numpy's global generator, torch CPU/CUDA."""
    np_state = np.random.get_state()
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: Mapping[str, Any]) -> None:
    """Restore what :func:`get_rng_states` returned."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        cuda = states["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file."""
    lines = Path(path).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]



def json_line(record: Mapping[str, Any]) -> str:
    """One ``metrics.jsonl`` line of a record (numpy scalars and 0-d tensors as numbers)."""
    return json.dumps(record, default=json_default) + "\n"
