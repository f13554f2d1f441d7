"""Small helpers every layer may use (this module imports nothing else of StreamRec).

* :func:`json_default` — the one JSON encoder hook for numpy scalars / arrays, paths and 0-d
  tensors (``json.dumps(obj, default=json_default)``);
* :func:`write_text_atomic` — write a text file through a temporary sibling and a rename;
* :func:`resolve_device` — ``"auto"`` / ``"cpu"`` / ``"cuda[:N]"`` to a ``torch.device``, with a
  one-line error for a device that does not exist here;
* :class:`Options` — the base of every options dataclass (model configs, the training loop's
  config): values are converted to the declared field types and checked in ``__post_init__``,
  and **every** bad field is reported at once in one :class:`OptionsError`.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar


# ====================================================================== JSON and files
def json_default(o: Any) -> Any:
    """``default=`` hook of :func:`json.dumps`: numpy scalars and arrays, paths, tensors."""
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, tuple | set | frozenset):
        return list(o)
    if type(o).__module__.startswith("torch") and hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary sibling and ``os.replace`` (never half
    written)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


# ====================================================================== devices
def resolve_device(device: Any) -> Any:
    """``"auto"`` -> ``cuda`` when available, else ``cpu``; ``"cpu"``, ``"cuda"``, ``"cuda:N"``
    (or a ``torch.device``) as given. Raises ``ValueError`` with a one-line reason for a name
    torch does not know or a CUDA device this machine does not have."""
    import torch

    if isinstance(device, torch.device):
        return device
    name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {device!r}; use cpu, cuda, cuda:N or auto")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: CUDA is not available on this machine; "
                             "use cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r}: MPS is not available on this machine")
    return dev


# ====================================================================== options

def parse_value(text: str) -> Any:
    """Parse a ``--set`` value: JSON, then a Python literal, else the string itself
    (``true`` / ``false`` / ``none`` / ``null`` in any case are understood)."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for parser in (json.loads, ast.literal_eval):
        try:
            return parser(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return text


class OptionsError(ValueError):
    """One or more options have a wrong type or value (the message lists every one)."""


_NONE_WORDS = ("none", "null")


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        args = typing.get_args(tp)
        inner = _describe(args[0]) if args else "value"
        return f"a list of {inner}s"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string",
            type(None): "none"}.get(tp, getattr(tp, "__name__", str(tp)))


def _convert(value: Any, tp: Any) -> Any:
    """``value`` as type ``tp`` (see :class:`Options`); ``ValueError`` when it is not one."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in _NONE_WORDS):
            if type(None) in args:
                return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg)
            except ValueError:
                continue
        raise ValueError
    if origin in (tuple, list):
        if isinstance(value, str) or not isinstance(value, tuple | list):
            if isinstance(value, int | float) and not isinstance(value, bool):
                value = [value]  # a single number for a one-or-more list
            else:
                raise ValueError
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ValueError
            return tuple(_convert(v, a) for v, a in zip(value, args))
        inner = args[0] if args else Any
        items = [_convert(v, inner) for v in value]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError
    if tp is int:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int):
            return value
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        raise ValueError
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError
        if not math.isfinite(value):
            raise ValueError
        return float(value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise ValueError
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ValueError


@dataclasses.dataclass
class Options:
    """Base of the options dataclasses (model configs, :class:`~streamrec.train.TrainConfig`).

    On construction every field is converted to its declared type (``int``, ``float``,
    ``bool``, ``str``, ``X | None``, ``tuple[...]`` / ``list[...]``): an integral float is
    accepted for an ``int`` (``1e4``), an ``int`` for a ``float``, ``"none"`` for an optional
    field; anything else (``epochs=2.7``, ``lr="fast"``, ``lr=nan``) is a problem. Then
    :meth:`check` adds the value rules of the class (``dim >= 1``, a name among choices, ...).
    All problems are raised together in one :class:`OptionsError` that names each option.
    """

    #: how the options are named in messages ("model option", "train option")
    kind: ClassVar[str] = "option"

    def __post_init__(self) -> None:
        problems = []
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            try:
                setattr(self, f.name, _convert(value, hints.get(f.name, Any)))
            except ValueError:
                problems.append(f"{f.name} must be {_describe(hints[f.name])}, got {value!r}")
        if not problems:
            problems = list(self.check())
        if problems:
            raise OptionsError(f"invalid {self.label()}: " + "; ".join(problems))

    def check(self) -> list[str]:
        """Value rules of the options, as a list of problems (empty: all fine)."""
        return []

    @classmethod
    def label(cls) -> str:
        return f"{cls.kind}s ({cls.__name__})"

    def to_dict(self) -> dict[str, Any]:
        """The options as a JSON-able dict (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Options:
        """Build from a dict, rejecting unknown keys with the list of known ones."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise OptionsError(
                f"unknown {cls.kind}(s) {', '.join(unknown)} for {cls.__name__}; "
                f"known: {', '.join(sorted(names))}"
            )
        return cls(**dict(values))


def one_of(name: str, value: Any, choices: typing.Iterable[Any]) -> list[str]:
    """``[problem]`` when ``value`` is not among ``choices``, else ``[]``."""
    choices = tuple(choices)
    if value in choices:
        return []
    return [f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}"]


def at_least(name: str, value: Any, low: float, strict: bool = False) -> list[str]:
    """``[problem]`` unless ``value >= low`` (``> low`` when ``strict``); None passes."""
    if value is None or (value > low if strict else value >= low):
        return []
    return [f"{name} must be {'>' if strict else '>='} {low}, got {value!r}"]


def in_range(name: str, value: Any, low: float, high: float, high_open: bool = False) -> list[str]:
    """``[problem]`` unless ``low <= value <= high`` (``< high`` when ``high_open``)."""
    if value is None or (low <= value < high if high_open else low <= value <= high):
        return []
    bracket = ")" if high_open else "]"
    return [f"{name} must be in [{low}, {high}{bracket}, got {value!r}"]
