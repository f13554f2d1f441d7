"""Model registry: name -> class, imported lazily so light commands stay fast.

:func:`get_model_class` imports a model's module on first use; a model whose optional
package is missing (PyG for the graph models, FAISS, the MiniLM weights) is refused with a
one-line error naming the extra to install, before anything is trained.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streamrec.models.base import Model, ModelConfig

#: model name -> "module:Class"
REGISTRY: dict[str, str] = {
    "pop": "streamrec.models.pop:Popularity",
    "mf": "streamrec.models.mf:MF",
    "logreg": "streamrec.models.click_logreg:LogReg",
    "mlp": "streamrec.models.click_mlp:MLP",
    "mlp-numpy": "streamrec.models.click_mlp_numpy:NumpyMLP",
    "lightgcn": "streamrec.models.lightgcn:LightGCN",
    "blend": "streamrec.models.blend:Blend",
    "gcn": "streamrec.models.gcn:GCN",
    "graphsage": "streamrec.models.graphsage:GraphSAGE",
    "gat": "streamrec.models.gat:GAT",
    "gf-cf": "streamrec.models.gfcf:GFCF",
    "chebycf": "streamrec.models.chebycf:ChebyCF",
    "bspm": "streamrec.models.bspm:BSPM",
    "ease": "streamrec.models.ease:EASE",
    "mult-vae": "streamrec.models.multvae:MultVAE",
    "mult-dae": "streamrec.models.multdae:MultDAE",
    "cnn-text": "streamrec.models.cnn_text:CNNText",
    "tfidf-svd": "streamrec.models.tfidf_svd:TfidfSVD",
    "minilm": "streamrec.models.minilm:MiniLM",
    "gru": "streamrec.models.rnn:GRU",
    "lstm": "streamrec.models.rnn:LSTM",
    "transformer": "streamrec.models.transformer:TransformerModel",
    "two-tower": "streamrec.models.two_tower:TwoTower",
    "diffrec": "streamrec.models.diffrec:DiffRec",
    "l-diffrec": "streamrec.models.ldiffrec:LDiffRec",
    "cfgan": "streamrec.models.cfgan:CFGAN",
}


class MissingPackageError(ImportError):
    """An optional package a model needs is not installed (the message names the extra)."""


def available_models() -> list[str]:
    """Names accepted by ``streamrec train MODEL``."""
    return sorted(REGISTRY)


def missing_package_message(package: str, model: str) -> str:
    """One line: which package ``model`` needs and the extra that installs it."""
    from streamrec.models.base import EXTRAS

    extra = EXTRAS.get(package)
    how = f"pip install 'streamrec[{extra}]'" if extra else f"pip install {package}"
    return f"model {model!r} needs the optional package {package!r}, which is not installed: {how}"


def get_model_class(name: str) -> type[Model]:
    """The class registered under ``name``.

    Raises ``ValueError`` naming the choices for an unknown name, and
    :class:`MissingPackageError` naming the extra when the model's module needs a package that
    is not installed.
    """
    try:
        target = REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; available: {', '.join(available_models())}"
        ) from None
    module, cls = target.split(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        root = (e.name or "").split(".")[0]
        if root and root != "streamrec":
            raise MissingPackageError(missing_package_message(root, name)) from None
        raise
    return getattr(mod, cls)


def check_requirements(cls: type[Model], config: ModelConfig) -> None:
    """Raise :class:`MissingPackageError` when a package ``cls`` needs with ``config`` is
    missing (see :meth:`~streamrec.models.base.Model.required_packages`)."""
    for package in cls.required_packages(config):
        if not _importable(package):
            raise MissingPackageError(missing_package_message(package, cls.name))


def _importable(package: str) -> bool:
    import sys

    if package in sys.modules:
        return sys.modules[package] is not None
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def models_where(keep: Callable[[type], bool]) -> list[str]:
    """Names of the registered models whose class passes ``keep`` (e.g. ``lambda c:
    c.trainable``), among those whose packages are installed."""
    out = []
    for name in available_models():
        try:
            cls = get_model_class(name)
        except ImportError:
            continue
        if keep(cls):
            out.append(name)
    return out


def models_with(capability: type) -> list[str]:
    """Names of the registered models that have ``capability`` (a mixin of
    :mod:`streamrec.models.base`), among those whose packages are installed."""
    return models_where(lambda cls: issubclass(cls, capability))
