"""The layers import one way: data -> models -> train -> eval -> run -> serve -> demo / cli.

Every ``import`` of every module (at the top or inside a function: a lazy import is still an
arrow) is read with ``ast``; a module may import StreamRec modules of its own layer or a lower
one, never a higher one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import streamrec

ROOT = Path(streamrec.__file__).parent

#: top-level part of the package -> its layer (higher may import lower, never the reverse)
LAYERS = {
    "__init__": 0,
    "common": 0,
    "nn_numpy": 0,  # the from-scratch numpy library: depends on nothing of StreamRec
    "data": 1,
    "models": 2,
    "train": 3,
    "eval": 4,
    "run": 5,
    "serve": 6,
    "judge": 7,
    "demo": 7,
    "cli": 8,
}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports() -> list[tuple[str, int, str]]:
    """(file relative to the package, line, imported streamrec module) for every import."""
    out = []
    for f in sorted(ROOT.rglob("*.py")):
        rel = f.relative_to(ROOT)
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            out += [(str(rel), node.lineno, m) for m in names if m.split(".")[0] == "streamrec"]
    return out


def test_every_module_belongs_to_a_layer():
    parts = {p.name.removesuffix(".py") for p in ROOT.iterdir()
             if p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists())}
    assert parts <= set(LAYERS), f"add {sorted(parts - set(LAYERS))} to LAYERS"


def test_no_import_runs_back_up_the_layers():
    upward = []
    for rel, line, module in _imports():
        here = Path(rel).parts[0].removesuffix(".py")
        there = _part(module)
        if there not in LAYERS:
            pytest.fail(f"{rel}:{line} imports {module}, which is in no layer")
        if LAYERS[there] > LAYERS[here]:
            upward.append(f"{rel}:{line} ({here}) imports {module} ({there})")
    assert not upward, "imports that run back up the layers:\n" + "\n".join(upward)


def test_no_model_imports_train_or_eval():
    bad = [f"{rel}:{line} imports {m}" for rel, line, m in _imports()
           if rel.startswith("models") and _part(m) in ("train", "eval", "run", "serve")]
    assert not bad, bad
