"""Blend: the trained LightGCN and a closed-form spectral filter, their scores mixed per user.

Two kinds of collaborative filter see the same interactions differently. LightGCN learns a
64-dimensional embedding of every user and item by gradient descent (a low-rank model of the
whole graph); a spectral filter (``bspm``, ``chebycf`` or ``gf-cf``) passes the user's own
history through a fixed low-pass filter of the item-item graph, with no low-rank bottleneck.
Their errors differ, so a mixture ranks better than either (measured on Gowalla:
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
trained model). When the run has a validation part, every candidate filter is fitted (each
searching its own ``"auto"`` options there, as ``streamrec train bspm`` does, unless
``filter_search=false``) and the pair (filter, ``w``) is chosen on validation: the filters of
:data:`FILTERS` (``filter="auto"``, the default) or the one named, ``w`` from
:data:`WEIGHT_GRID` (``weight="auto"``) or the number given; at most ``valid_users`` seeded
validation users, every part's scores cached so a candidate costs a mix and a ranking.
Without a validation part the blend is :data:`DEFAULT_FILTER` at its size rule with
:data:`DEFAULT_WEIGHT`: the pair chosen on a validation part carved from Gowalla's training
file (``benchmarks/blend_board.py``). ``filter_options`` sets a named filter's own options
(``"key=value"`` strings, e.g. ``--set filter=chebycf --set 'filter_options=["k=512"]'``).

State: LightGCN's ego embeddings and item bias, the chosen filter (``filter_index`` into
:data:`FILTERS`) and its state (``filter.*``: for bspm the chosen ``k``, its singular vectors
and weights), ``weight`` (the ``w`` in use) and ``fitted``, so a loaded run scores as the
trained one did. The item vectors
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
from streamrec.models.spectral_auto import AUTO, HistoryRows, row_key, selection_users

__all__ = ["DEFAULT_FILTER", "DEFAULT_WEIGHT", "FILTERS", "WEIGHT_GRID", "Blend", "BlendConfig",
           "mix_scores"]

#: the spectral filters a blend can use (``filter="auto"`` chooses among them on validation)
FILTERS = ("chebycf", "bspm", "gf-cf")
#: candidates of ``weight="auto"`` (0 and 1 included: the blend is never below its better part
#: on the validation users it is chosen on)
WEIGHT_GRID = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 1.0)
#: the filter and ``w`` without a validation part: the pair chosen on the validation part
#: carved from Gowalla's training file (one random item per user), LightGCN's defaults and the
#: filters at their size rules (``benchmarks/results/blend_board.md``)
DEFAULT_FILTER = "bspm"
DEFAULT_WEIGHT = 0.2


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

    filter: the closed-form part: ``bspm``, ``chebycf`` or ``gf-cf``; ``auto``: chosen with
        ``w`` on validation from :data:`FILTERS`, or :data:`DEFAULT_FILTER` without a
        validation part.
    filter_options: a named filter's own options, ``"key=value"`` strings (its defaults
        otherwise).
    filter_search: with a validation part, each filter searches its own ``auto`` options
        there (as ``streamrec train NAME`` does); false: the filters' size rules, as without
        validation.
    weight: [w] the filter's share in [0, 1]; ``auto``: chosen on validation from
        :data:`WEIGHT_GRID` when the run has a validation part, else :data:`DEFAULT_WEIGHT`.
    valid_users: the choice of the filter and ``w`` scores at most this many validation users
        (seeded).
    """

    filter: str = AUTO
    filter_options: list[str] = field(default_factory=list)
    filter_search: bool = True
    weight: float | str = AUTO
    valid_users: int = 5000

    def check(self) -> list[str]:
        problems = [*super().check(), *one_of("filter", self.filter, (AUTO, *FILTERS)),
                    *at_least("valid_users", self.valid_users, 1)]
        if self.weight != AUTO and (isinstance(self.weight, str)
                                    or not 0.0 <= float(self.weight) <= 1.0):
            problems.append(f"weight must be a number in [0, 1] or 'auto', got {self.weight!r}")
        if self.filter == AUTO and self.filter_options:
            problems.append("filter_options set a named filter's options: name the filter "
                            f"(one of {', '.join(FILTERS)}) or drop them")
        elif self.filter in FILTERS:
            try:
                self.filter_config(self.filter)
            except (OptionsError, ValueError, TypeError) as e:
                problems.append(f"filter_options: {e}")
        return problems

    def candidates(self) -> tuple[str, ...]:
        """The filters the blend may use: the one named, or all of :data:`FILTERS`."""
        return FILTERS if self.filter == AUTO else (self.filter,)

    def filter_config(self, name: str) -> Any:
        """Filter ``name``'s options: its defaults, with ``filter_options`` applied when it is
        the named filter."""
        from streamrec.models import get_model_class

        cls = get_model_class(name)
        values = cls.Config().to_dict()
        for item in self.filter_options if name == self.filter else []:
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
        self._train = train
        #: every candidate filter, built now (their memory guards refuse before training
        #: starts); ``filter`` is the one in use (the default until :meth:`fit` chooses)
        self._candidates: dict[str, Any] | None = {
            name: self._make_filter(name) for name in config.candidates()}
        first = DEFAULT_FILTER if config.filter == AUTO else config.filter
        self.filter = self._candidates[first]
        self.register_buffer("filter_index", torch.tensor(FILTERS.index(first)))
        w = DEFAULT_WEIGHT if config.weight == AUTO else float(config.weight)
        self.register_buffer("weight", torch.tensor(w, dtype=torch.float64))
        self.register_buffer("fitted", torch.tensor(False))
        #: the choice's cache of part scores, by (part, digest of the users and their history)
        self._parts: dict[tuple[str, bytes], Tensor] | None = None
        self._rows = HistoryRows()
        self._report: dict[str, Any] = {}

    def _make_filter(self, name: str) -> Any:
        from streamrec.models import get_model_class

        return get_model_class(name)(self.config.filter_config(name), self._train)

    def _use_filter(self, name: str) -> None:
        if self.filter.name != name:
            built = (self._candidates or {}).get(name)
            self.filter = (self._make_filter(name) if built is None else built).to(
                self.weight.device)
        self.filter_index.fill_(FILTERS.index(name))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str,
                              *args: Any, **kwargs: Any) -> None:
        # the saved run's filter replaces the default before the children's states load
        index = state_dict.get(prefix + "filter_index")
        if index is not None:
            self._use_filter(FILTERS[int(index)])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------ the closed-form step
    def fit(self, train: Dataset, validate: Validate | None = None) -> None:
        """Fit the candidate filters on ``train`` (their own searches on ``validate`` when it
        has one), then choose the filter and ``w`` (see the module docstring). Called by the
        trainer after the loop, with LightGCN's best weights in place."""
        t0 = time.perf_counter()
        candidates = self.config.candidates() if validate is not None else (self.filter.name,)
        search = validate if self.config.filter_search else None
        fits: dict[str, dict[str, Any]] = {}
        for name in candidates:
            t1 = time.perf_counter()
            self._use_filter(name)
            self.filter.fit(train, search)
            fits[name] = {"seconds": round(time.perf_counter() - t1, 2),
                          **{k: v for k, v in self.filter.fit_report().items()
                             if isinstance(v, str | int | float | bool)}}
        report: dict[str, Any] = {}
        self.fitted.fill_(True)
        chooses = validate is not None and (self.config.weight == AUTO or len(candidates) > 1)
        if chooses:
            report.update(self._choose(validate, candidates))
        else:
            report["selection"] = ("fixed" if self.config.weight != AUTO
                                   else "default (no validation)")
        self._candidates = None  # the others' memory back
        chosen = self.filter.name
        report.update({"filter": chosen, "weight": float(self.weight), "filters": fits,
                       **{f"filter_{k}": v for k, v in fits[chosen].items()}})
        report["seconds"] = round(time.perf_counter() - t0, 2)
        self._report = report

    def _choose(self, validate: Validate, candidates: tuple[str, ...]) -> dict[str, Any]:
        metric, mode = validation_target(validate)
        users = selection_users(self.config.valid_users, self.n_items, len(candidates))
        sign = 1.0 if mode == "max" else -1.0
        weights = WEIGHT_GRID if self.config.weight == AUTO else (float(self.config.weight),)
        tried: list[dict[str, Any]] = []
        self._parts = {}
        try:
            for name in candidates:
                self._use_filter(name)
                for w in weights:
                    if w <= 0.0 and tried and tried[0]["weight"] <= 0.0:
                        continue  # LightGCN alone: the same for every filter
                    self.weight.fill_(w)
                    logs = validate_on(validate, self, max_users=users)
                    if metric not in logs:
                        raise KeyError(f"{self.name} chooses its filter and weight by "
                                       f"{metric!r} (valid_metric), but validation returned "
                                       f"{', '.join(sorted(logs)) or 'nothing'}")
                    tried.append({"filter": name if w > 0.0 else "-", "weight": w,
                                  metric: round(logs[metric], 5)})
        finally:
            self._parts = None
        best = max(tried, key=lambda t: sign * t[metric])  # ties: the first tried
        self._use_filter(self.filter.name if best["filter"] == "-" else best["filter"])
        self.weight.fill_(best["weight"])
        return {"selection": "validation", "metric": metric, "valid": best[metric],
                "valid_users_max": users, "tried": tried}

    def fit_report(self) -> dict[str, Any]:
        """How the filters were fitted and the pair chosen; after ``load_run``, the restored
        filter and ``w``."""
        return dict(self._report) if self._report else {"filter": self.filter.name,
                                                        "weight": float(self.weight)}

    # ------------------------------------------------------------------ scoring
    def score(self, users: Tensor, history: Dataset) -> Tensor:
        """Scores float32 [B, n_items]: LightGCN's alone until the filter is fitted, then
        the mix of the module docstring."""
        if not bool(self.fitted):
            return super().score(users, history)
        w = float(self.weight)
        if self._parts is None:  # not in the choice: compute only what the mix needs
            if w >= 1.0:
                return self.filter.score(users, history)
            a = super().score(users, history)
            return a if w <= 0.0 else mix_scores(a, self.filter.score(users, history), w)
        ids = users.cpu().numpy()
        key = row_key(ids, self._rows(ids, history))  # each validation builds a new history
        if ("lightgcn", key) not in self._parts:
            self._parts[("lightgcn", key)] = super().score(users, history)
        if (self.filter.name, key) not in self._parts:
            self._parts[(self.filter.name, key)] = self.filter.score(
                users, history).to(users.device)
        a, b = self._parts[("lightgcn", key)], self._parts[(self.filter.name, key)]
        return mix_scores(a.clone() if w <= 0.0 else a, b.clone() if w >= 1.0 else b, w)
