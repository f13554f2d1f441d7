"""Blend: the trained LightGCN and a closed-form spectral filter, their scores mixed per user.

Two kinds of collaborative filter see the same interactions differently. LightGCN learns a
64-dimensional embedding of every user and item by gradient descent (a low-rank model of the
whole graph); a spectral filter (``chebycf`` by default, or ``bspm`` / ``gf-cf``) passes the
user's own history through a fixed low-pass filter of the item-item graph, with no low-rank
bottleneck. Their errors differ, so a mixture ranks better than either (measured on Gowalla:
``docs/graph.md``). For user ``u`` with LightGCN scores ``a_u`` and filter scores ``b_u``
(float32 [n_items] each):

    s_u = (1 − w) · z(a_u) + w · z(b_u),        z(x) = (x − mean_i x) / std_i x

The two scales are unrelated (LightGCN's are logits ``cos / τ + b_i``, the filter's a
diffused interaction mass), so each is standardised over the catalogue, per user, before they
are mixed; ``w`` is then the filter's share of the spread. ``w = 0`` is LightGCN alone,
``w = 1`` the filter alone (exactly: no standardisation is applied at either end).

**Training.** The shared loop trains the LightGCN part as ``streamrec train lightgcn`` does
(same options, recipe and defaults, except that validation selects by NDCG@20, the filters'
metric; its validations, and so early stopping and the best epoch, score LightGCN alone, as
the filter is not fitted yet). Then the trainer calls
:meth:`Blend.fit` with the best weights restored (the contract's closed-form step of a
trained model): the filter is fitted (its own ``"auto"`` options searched on validation when
the run has a validation part, as ``streamrec train chebycf`` does), and ``w`` is chosen on
validation (``weight="auto"``, from :data:`WEIGHT_GRID`, on at most ``valid_users`` seeded
validation users, both parts' scores cached so a candidate costs a mix and a ranking), or is
:data:`DEFAULT_WEIGHT` when the run has no validation part: the weight chosen on a
validation part carved from Gowalla's training file (``benchmarks/spectral_board.py``).
``filter_options`` sets the filter's own options (``"key=value"`` strings, e.g.
``--set 'filter_options=["k=512","alpha=0.2"]'``).

State: LightGCN's ego embeddings and item bias, the filter's state (``filter.*``: for
chebycf the chosen ``k``, its singular vectors and weights), ``weight`` (the ``w`` in use) and
``fitted``, so a loaded run scores as the trained one did. The item vectors
(:class:`~streamrec.models.base.ItemEmbedder`: neighbours, MMR) are LightGCN's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from streamrec.common import OptionsError, at_least, one_of, parse_value
from streamrec.data.dataset import Dataset
from streamrec.models.base import Validate, validate_on, validation_target
from streamrec.models.lightgcn import LightGCN, LightGCNConfig
from streamrec.models.spectral_auto import AUTO, selection_users

__all__ = ["DEFAULT_WEIGHT", "FILTERS", "WEIGHT_GRID", "Blend", "BlendConfig", "mix_scores"]

#: the spectral filters a blend can use
FILTERS = ("chebycf", "bspm", "gf-cf")
#: candidates of ``weight="auto"`` (0 and 1 included: the blend is never below its better part
#: on the validation users it is chosen on)
WEIGHT_GRID = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 1.0)
#: ``w`` without a validation part: chosen on the validation part carved from Gowalla's
#: training file (one random item per user), LightGCN's defaults and chebycf with its rule
#: settings (``benchmarks/results/spectral_board.md``)
DEFAULT_WEIGHT = 0.05


def standardize(scores: Tensor) -> Tensor:
    """Each row of ``scores`` [B, n_items] shifted to mean 0 and scaled to std 1 (a constant
    row becomes 0)."""
    centred = scores - scores.mean(1, keepdim=True)
    return centred / centred.std(1, keepdim=True).clamp_min(1e-12)


def mix_scores(a: Tensor, b: Tensor, weight: float) -> Tensor:
    """``(1 − weight) z(a) + weight z(b)`` for score rows ``a``, ``b`` [B, n_items] (``a``
    itself at weight 0, ``b`` at weight 1)."""
    if weight <= 0.0:
        return a
    if weight >= 1.0:
        return b
    return standardize(a).mul_(1.0 - weight).add_(standardize(b), alpha=weight)


@dataclass
class BlendConfig(LightGCNConfig):
    """Options of :class:`Blend`: LightGCN's (:class:`~streamrec.models.lightgcn.LightGCNConfig`)
    and

    filter: the closed-form part: ``chebycf``, ``bspm`` or ``gf-cf``.
    filter_options: the filter's own options, ``"key=value"`` strings (its defaults otherwise).
    weight: [w] the filter's share in [0, 1]; ``auto``: chosen on validation from
        :data:`WEIGHT_GRID` when the run has a validation part, else :data:`DEFAULT_WEIGHT`.
    valid_users: the choice of ``w`` scores at most this many validation users (seeded).
    """

    filter: str = "chebycf"
    filter_options: list[str] = field(default_factory=list)
    weight: float | str = AUTO
    valid_users: int = 5000

    def check(self) -> list[str]:
        problems = [*super().check(), *one_of("filter", self.filter, FILTERS),
                    *at_least("valid_users", self.valid_users, 1)]
        if self.weight != AUTO and (isinstance(self.weight, str)
                                    or not 0.0 <= float(self.weight) <= 1.0):
            problems.append(f"weight must be a number in [0, 1] or 'auto', got {self.weight!r}")
        if self.filter in FILTERS:
            try:
                self.filter_config()
            except (OptionsError, ValueError, TypeError) as e:
                problems.append(f"filter_options: {e}")
        return problems

    def filter_config(self) -> Any:
        """The filter's options: its defaults with ``filter_options`` applied."""
        from streamrec.models import get_model_class

        cls = get_model_class(self.filter)
        values = cls.Config().to_dict()
        for item in self.filter_options:
            key, sep, text = str(item).partition("=")
            if not sep:
                raise ValueError(f"{item!r} is not key=value")
            values[key.strip()] = parse_value(text.strip())
        return cls.Config.from_dict(values)


class Blend(LightGCN):
    """LightGCN trained by the loop, plus a spectral filter fitted after it; scores mixed."""

    name = "blend"
    Config = BlendConfig
    #: LightGCN's, but selecting by NDCG@20 (the filters' and most models' validation metric:
    #: the filter's own search and the weight follow it)
    train_defaults: ClassVar[dict[str, Any]] = {**LightGCN.train_defaults,
                                                "valid_metric": "ndcg@20"}
    train_recipe: ClassVar[dict[str, Any]] = dict(LightGCN.train_recipe)

    def __init__(self, config: BlendConfig, train: Dataset) -> None:
        super().__init__(config, train)
        from streamrec.models import get_model_class

        #: the closed-form part (built now: its memory guard refuses before training starts)
        self.filter = get_model_class(config.filter)(config.filter_config(), train)
        w = DEFAULT_WEIGHT if config.weight == AUTO else float(config.weight)
        self.register_buffer("weight", torch.tensor(w, dtype=torch.float64))
        self.register_buffer("fitted", torch.tensor(False))
        self._parts: dict[tuple, tuple[Tensor, Tensor]] | None = None
        self._report: dict[str, Any] = {}

    # ------------------------------------------------------------------ the closed-form step
    def fit(self, train: Dataset, validate: Validate | None = None) -> None:
        """Fit the filter on ``train`` (its own search on ``validate`` when it has one), then
        choose ``w`` (see the module docstring). Called by the trainer after the loop, with
        LightGCN's best weights in place."""
        t0 = time.perf_counter()
        self.filter.fit(train, validate)
        self.fitted.fill_(True)
        filter_seconds = time.perf_counter() - t0
        report: dict[str, Any] = {"filter": self.config.filter,
                                  "filter_seconds": round(filter_seconds, 2)}
        report.update({f"filter_{k}": v for k, v in self.filter.fit_report().items()
                       if isinstance(v, str | int | float | bool)})
        if self.config.weight == AUTO and validate is not None:
            report.update(self._choose_weight(validate))
        else:
            report["selection"] = ("fixed" if self.config.weight != AUTO
                                   else "default (no validation)")
        report["weight"] = float(self.weight)
        report["seconds"] = round(time.perf_counter() - t0, 2)
        self._report = report

    def _choose_weight(self, validate: Validate) -> dict[str, Any]:
        metric, mode = validation_target(validate)
        users = selection_users(self.config.valid_users, self.n_items, 1)
        sign = 1.0 if mode == "max" else -1.0
        tried: list[dict[str, float]] = []
        self._parts = {}
        try:
            for w in WEIGHT_GRID:
                self.weight.fill_(w)
                logs = validate_on(validate, self, max_users=users)
                if metric not in logs:
                    raise KeyError(f"{self.name} chooses its weight by {metric!r} "
                                   "(valid_metric), but validation returned "
                                   f"{', '.join(sorted(logs)) or 'nothing'}")
                tried.append({"weight": w, metric: round(logs[metric], 5)})
        finally:
            self._parts = None
        best = max(tried, key=lambda t: sign * t[metric])  # ties: the first (smaller w)
        self.weight.fill_(best["weight"])
        return {"selection": "validation", "metric": metric, "valid": best[metric],
                "valid_users_max": users, "tried": tried}

    def fit_report(self) -> dict[str, Any]:
        """How the filter was fitted and ``w`` chosen; after ``load_run``, the restored ``w``."""
        return dict(self._report) if self._report else {"filter": self.config.filter,
                                                        "weight": float(self.weight)}

    # ------------------------------------------------------------------ scoring
    def score(self, users: Tensor, history: Dataset) -> Tensor:
        """Scores float32 [B, n_items]: LightGCN's alone until the filter is fitted, then
        the mix of the module docstring."""
        if not bool(self.fitted):
            return super().score(users, history)
        w = float(self.weight)
        if self._parts is None:  # not in the choice of w: compute only what the mix needs
            if w >= 1.0:
                return self.filter.score(users, history)
            a = super().score(users, history)
            return a if w <= 0.0 else mix_scores(a, self.filter.score(users, history), w)
        key = (users.cpu().numpy().tobytes(), id(history))
        if key not in self._parts:
            self._parts[key] = (super().score(users, history),
                                self.filter.score(users, history).to(users.device))
        a, b = self._parts[key]
        return mix_scores(a.clone() if w <= 0.0 else a, b.clone() if w >= 1.0 else b, w)
