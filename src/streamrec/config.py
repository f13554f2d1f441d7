"""Run configuration: config files and ``--set key=value`` overrides.

A config file (JSON, or TOML) may hold three tables::

    {"model": {"dim": 64}, "train": {"lr": 0.005, "epochs": 30}, "split": {"method": "loo"}}

``--set`` keys may be qualified (``model.dim=64``, ``train.lr=5e-3``, ``split.method=loo``) or
bare (``lr=5e-3``); a bare key goes to whichever of the model and train configs has that field,
and is an error if both or neither do.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path
from typing import Any

SECTIONS = ("model", "train", "split")


def parse_value(text: str) -> Any:
    """Parse a ``--set`` value: JSON, then a Python literal, else the string itself."""
    for parser in (json.loads, ast.literal_eval):
        try:
            return parser(text)
        except (ValueError, SyntaxError, TypeError):
            continue
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    return text


def read_config_file(path: str | Path | None) -> dict[str, dict[str, Any]]:
    """Read a JSON or TOML config file into ``{"model": {...}, "train": {...}, "split": {...}}``."""
    out: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    if path is None:
        return out
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    if path.suffix == ".toml":
        import tomllib

        raw = tomllib.loads(path.read_text())
    else:
        raw = json.loads(path.read_text())
    unknown = set(raw) - set(SECTIONS)
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {sorted(unknown)}; use {list(SECTIONS)}")
    for s in SECTIONS:
        out[s].update(raw.get(s, {}))
    return out


def apply_overrides(
    sections: dict[str, dict[str, Any]],
    overrides: list[str],
    model_fields: set[str],
    train_fields: set[str],
) -> dict[str, dict[str, Any]]:
    """Merge ``key=value`` strings into the sections (see the module docstring)."""
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, text = item.split("=", 1)
        value = parse_value(text)
        if "." in key:
            section, name = key.split(".", 1)
            if section not in SECTIONS:
                raise ValueError(f"--set {key}: unknown section {section!r}; use {SECTIONS}")
        else:
            name = key
            homes = [s for s, f in (("model", model_fields), ("train", train_fields)) if name in f]
            if len(homes) != 1:
                where = "both model and train configs" if homes else "no config"
                raise ValueError(
                    f"--set {key}: {name!r} is in {where}; write model.{name} or train.{name}"
                    if homes
                    else f"--set {key}: unknown option {name!r}. Model options: "
                    f"{', '.join(sorted(model_fields))}; train options: "
                    f"{', '.join(sorted(train_fields))}"
                )
            section = homes[0]
        sections[section][name] = value
    return sections


def field_names(cls: type) -> set[str]:
    """Field names of a dataclass type."""
    return {f.name for f in dataclasses.fields(cls)}
