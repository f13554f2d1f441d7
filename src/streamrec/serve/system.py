"""The StreamRec system: candidate sources -> merge -> filters -> ranker -> re-ranker.

A system is built from trained runs (all on the same dataset and split) named in a config file
(:func:`build_system`, ``streamrec system build CONFIG --out DIR``) and loaded with one call
(:func:`load_system`). For a batch of users (:class:`~streamrec.serve.state.UserState`) it

1. asks every **source** (:mod:`streamrec.serve.sources`) for up to its quota of candidates,
   never an item the user must not get;
2. **merges** them: each candidate keeps the sources that proposed it and its rank in each;
   the merged order is reciprocal-rank fusion, ``sum_s 1 / (60 + rank_s)``;
3. **filters** what the user consumed (unless re-consumption is allowed), blocked, and what
   the catalogue marks unavailable (an ``available`` item column);
4. **ranks** the candidates with a click model (:class:`~streamrec.models.base.ClickModel`)
   on their features: the 20 click features of :func:`~streamrec.data.features.click_features`
   (the same function that built the model's training data) and, for a ranker trained on the
   candidates themselves, one feature per source, ``1 / (1 + rank)`` (0 when the source did
   not propose the item);
5. **re-ranks** the top for diversity, a category cap and freshness
   (:mod:`streamrec.serve.rerank`);

and explains every served item: the sources that proposed it, its position after each stage,
the ranker's largest feature contributions (the change of its logit when the feature is set
to its training mean), and, for items the session transformer proposed, the past items it
attended to.

The system is a :class:`~streamrec.models.base.Recommender`: its scores are the candidates'
final order (``-inf`` elsewhere), so the one evaluator judges it like any model and
``streamrec evaluate DIR`` works on a system directory.

The ranker (``ranker.kind``):

* ``learned`` (default): a click model (``mlp`` or ``logreg``) trained at build time on the
  candidates the sources produce for a random half of the validation users (their held-out
  validation item against the other candidates, up to ``negatives`` of them); the other half is
  what the system is validated (and its re-ranker tuned) on;
* ``click``: a trained click-model run (the M2 click MLP), on the 20 click features;
* ``none``: the merged order.

Model-scored sources (``scores``, ``retrieval``) read the history the system was built on;
events recorded since reach the system through the session and neighbour sources, the
features and the filters.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from streamrec.common import OptionsError, json_default, write_text_atomic
from streamrec.data.dataset import Dataset
from streamrec.data.features import (
    FEATURE_NAMES,
    Catalogue,
    Events,
    Profiles,
    click_features,
)
from streamrec.data.splits import Split
from streamrec.models.base import (
    ClickModel,
    Explainer,
    ItemEmbedder,
    ModelConfig,
    Recommender,
    require,
)
from streamrec.run import Run, RunError, load_run
from streamrec.serve.rerank import RerankOptions, rerank
from streamrec.serve.sources import (
    ModelSource,
    NeighboursSource,
    PopularSource,
    Proposal,
    RetrievalSource,
    ScoresSource,
    SessionSource,
    Source,
)
from streamrec.serve.state import HistoryIndex, UserState

FORMAT = "streamrec-system/1"
SYSTEM_FILE = "system.json"
#: written first and removed when ``system.json`` is: a directory holding it is a build that was
#: interrupted, which ``--overwrite`` may clear
BUILDING_FILE = ".building"
SOURCE_KINDS = ("auto", "retrieval", "session", "scores", "neighbours", "popular")
RANKER_KINDS = ("learned", "click", "none")
RRF_K = 60
STAGES = ("sources", "merge", "filters", "ranker", "reranker")


class SystemConfigError(ValueError):
    """A system config or directory is wrong (one-line message)."""


# ============================================================================ the config
def _problems(section: str, known: dict[str, Any], values: dict[str, Any]) -> list[str]:
    unknown = sorted(set(values) - set(known))
    return [f"{section}: unknown key(s) {', '.join(unknown)}; known: {', '.join(known)}"] \
        if unknown else []


def parse_config(raw: dict[str, Any], base: Path | None = None) -> dict[str, Any]:
    """A system config (the TOML/JSON tables) checked and completed with defaults; run paths
    are resolved against ``base`` (the config file's folder). Raises :class:`SystemConfigError`
    listing every problem."""
    problems: list[str] = []
    top = {"data": None, "k": 10, "seed": 0, "sources": [], "filters": {}, "ranker": {},
           "reranker": {}, "features": {}}
    problems += _problems("system", top, raw)
    cfg = {**top, **{k: v for k, v in raw.items() if k in top}}

    def path(p: Any) -> str | None:
        if p is None:
            return None
        q = Path(str(p)).expanduser()
        return str((base / q).resolve() if base is not None and not q.is_absolute()
                   else q.resolve())

    cfg["data"] = path(cfg["data"])
    src_defaults = {"name": None, "kind": "auto", "run": None, "quota": 100, "index": None,
                    "recent": 5, "per_item": 50, "decay": 0.8, "half_life_days": None}
    sources = []
    if not isinstance(cfg["sources"], list) or not cfg["sources"]:
        problems.append("sources: give at least one [[sources]] table")
        cfg["sources"] = []
    names = set()
    for j, s in enumerate(cfg["sources"]):
        if not isinstance(s, dict):
            problems.append(f"sources[{j}] must be a table")
            continue
        problems += _problems(f"sources[{j}]", src_defaults, s)
        s = {**src_defaults, **s}
        s["name"] = str(s["name"] or s["kind"] if s["kind"] != "auto" else s["name"] or "")
        if not s["name"]:
            problems.append(f"sources[{j}]: give it a name")
        if s["name"] in names:
            problems.append(f"sources[{j}]: the name {s['name']!r} is used twice")
        names.add(s["name"])
        if s["kind"] not in SOURCE_KINDS:
            problems.append(f"sources[{j}]: kind must be one of {', '.join(SOURCE_KINDS)}, "
                            f"got {s['kind']!r}")
        if s["kind"] != "popular" and not s["run"]:
            problems.append(f"sources[{j}] ({s['name']}): give the run directory (run = ...)")
        if not isinstance(s["quota"], int) or isinstance(s["quota"], bool) or s["quota"] < 1:
            problems.append(f"sources[{j}] ({s['name']}): quota must be an integer >= 1")
        s["run"] = path(s["run"])
        sources.append(s)
    cfg["sources"] = sources
    filt = {"consumed": True, "unavailable": True, "blocks": {}}
    problems += _problems("filters", filt, cfg["filters"])
    cfg["filters"] = {**filt, **cfg["filters"]}
    rank = {"kind": "learned", "run": None, "model": "mlp", "options": [], "users": 4000,
            "negatives": 50, "source_features": True}
    problems += _problems("ranker", rank, cfg["ranker"])
    cfg["ranker"] = {**rank, **cfg["ranker"]}
    if cfg["ranker"]["kind"] not in RANKER_KINDS:
        problems.append(f"ranker: kind must be one of {', '.join(RANKER_KINDS)}, got "
                        f"{cfg['ranker']['kind']!r}")
    if cfg["ranker"]["kind"] == "click" and not cfg["ranker"]["run"]:
        problems.append("ranker: kind 'click' needs the run of a click model (run = ...)")
    if cfg["ranker"]["model"] not in ("mlp", "logreg"):
        problems.append(f"ranker: model must be mlp or logreg, got {cfg['ranker']['model']!r}")
    cfg["ranker"]["run"] = path(cfg["ranker"]["run"])
    rr = dict(cfg["reranker"])
    emb = rr.pop("embeddings", None)
    tune = rr.pop("tune", False)
    try:
        RerankOptions.from_dict(rr)
    except OptionsError as e:
        problems.append(f"reranker: {e}")
    cfg["reranker"] = {**RerankOptions().to_dict(), **rr, "embeddings": emb, "tune": bool(tune)}
    feats = {"vectors": None}
    problems += _problems("features", feats, cfg["features"])
    cfg["features"] = {**feats, **cfg["features"]}
    for key in ("k", "seed"):
        if not isinstance(cfg[key], int) or isinstance(cfg[key], bool) or cfg[key] < (
                1 if key == "k" else 0):
            problems.append(f"{key} must be an integer >= {1 if key == 'k' else 0}")
    if problems:
        raise SystemConfigError("invalid system config: " + "; ".join(problems))
    return cfg


def read_config(path: str | Path) -> dict[str, Any]:
    """Read and check a system config file (TOML or JSON)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"system config {path} does not exist")
    try:
        text = path.read_text()
        if path.suffix == ".toml":
            import tomllib

            raw = tomllib.loads(text)
        else:
            raw = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        kind = "TOML" if path.suffix == ".toml" else "JSON"
        raise SystemConfigError(f"system config {path} is not valid {kind}: {e}") from None
    if not isinstance(raw, dict):
        raise SystemConfigError(f"system config {path} must hold a table")
    return parse_config(raw, path.parent.resolve())


# ============================================================================ the system
@dataclasses.dataclass
class SystemConfig(ModelConfig):
    """Placeholder options of :class:`System` (a system is configured by its own file)."""


class Candidates(NamedTuple):
    """One user's candidates after the merge and the filters, in merged order.

    items: int64 [m]; ranks: int64 [m, S] the item's 1-based rank in each source (0: not
    proposed); scores: float64 [m, S] the source's score of the item (NaN: not proposed);
    merged: float64 [m] the reciprocal-rank-fusion score; filtered: how many the filters took.
    """

    items: np.ndarray
    ranks: np.ndarray
    scores: np.ndarray
    merged: np.ndarray
    filtered: int


@dataclasses.dataclass
class Served:
    """What the system serves one user, in final order (best first).

    items: int64 [n]; scores: float32 [n] (the ranker's logits, or the merged score without a
    ranker); ranks: int64 [n, S] the item's rank in each source (1-based, 0: not proposed);
    merged / ranked: int64 [n] its 1-based position after the merge and after the ranker;
    filtered: how many merged candidates the filters removed; notes: per final position, the
    explanation parts beyond the positions (``ranker``, ``attended``), when asked for.
    """

    items: np.ndarray
    scores: np.ndarray
    source_names: list[str]
    ranks: np.ndarray
    merged: np.ndarray
    ranked: np.ndarray
    filtered: int = 0
    notes: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def info(self, j: int) -> dict[str, Any]:
        """The explanation of the item at 0-based final position ``j``: the sources that
        proposed it, its position after each stage, and the notes."""
        src = {self.source_names[s]: int(self.ranks[j, s]) for s in np.flatnonzero(self.ranks[j])}
        return {"sources": list(src),
                "positions": {**{f"source:{n}": r for n, r in src.items()},
                              "merged": int(self.merged[j]), "ranked": int(self.ranked[j]),
                              "final": j + 1},
                **self.notes.get(j, {})}


class System(Recommender):
    """The multi-stage recommender (see the module docstring)."""

    name = "system"
    Config = SystemConfig
    trainable = False

    def __init__(
        self,
        config: dict[str, Any],
        train: Dataset,
        sources: list[Source],
        catalogue: Catalogue,
        profiles: Profiles,
        ranker: Run | None = None,
        feature_means: np.ndarray | None = None,
        reranker: RerankOptions | None = None,
        embeddings: np.ndarray | None = None,
    ) -> None:
        super().__init__(SystemConfig(), train)
        self.spec = config
        self.sources = sources
        self.catalogue = catalogue
        self.profiles = profiles
        self.ranker = ranker
        if ranker is not None:
            require(ranker.model, ClickModel, "rank candidates")
            self.feature_names = list(ranker.model.feature_names)
            unknown = [f for f in self.feature_names if f not in FEATURE_NAMES
                       and f.partition(":")[2] not in {s.name for s in sources}]
            if unknown:
                raise SystemConfigError(f"the ranker reads features the system cannot compute: "
                                  f"{', '.join(unknown)}")
        else:
            self.feature_names = []
        self.feature_means = feature_means
        self.reranker = reranker or RerankOptions()
        self.unit_embeddings = embeddings
        avail = train.items.get("available")
        self.unavailable = np.flatnonzero(~np.asarray(avail, dtype=bool)) \
            if avail is not None and config["filters"]["unavailable"] else np.zeros(0, np.int64)
        self.filters = config["filters"]
        #: internal user id -> blocked internal item ids (the config's original ids mapped)
        self.blocks: dict[int, np.ndarray] = {}
        for user, items in (config["filters"].get("blocks") or {}).items():
            try:
                u = train.user_index(user)
                self.blocks[u] = np.array([train.item_index(i) for i in items], dtype=np.int64)
            except KeyError as e:
                raise SystemConfigError(f"filters.blocks: {e.args[0]}") from None
        self._index: tuple[Dataset, HistoryIndex] | None = None

    # ------------------------------------------------------------------ the pipeline
    def exclusions(self, state: UserState) -> np.ndarray:
        """Items the user must not get: consumed (when filtered), blocked, unavailable."""
        parts = [state.blocked, self.unavailable]
        if self.filters["consumed"]:
            parts.append(state.items)
        return np.unique(np.concatenate(parts).astype(np.int64))

    def default_times(self, states: list[UserState], fallback: int) -> np.ndarray:
        """The request time of each state: one second after its latest event (``fallback``
        for a user without events)."""
        return np.array([s.last_time(fallback - 1) + 1 for s in states], dtype=np.int64)

    def serve(
        self,
        states: list[UserState],
        history: Dataset,
        k: int | None = None,
        t: np.ndarray | None = None,
        explain: bool = False,
        timings: dict[str, float] | None = None,
        stages: Sequence[str] = ("ranker", "reranker"),
    ) -> list[Served]:
        """Run the pipeline for a batch of users (see the module docstring).

        history: the interactions the model-scored sources read; k: the length the re-ranker
        fills (default: the config's ``k``); t: request times [B] (default: one second after
        each user's latest event); timings: a dict the seconds of each stage are added to;
        stages: which of the optional stages run (``ranker``, ``reranker``; for ablations).
        """
        k = int(k or self.spec["k"])
        clock = time.perf_counter
        tick = clock()

        def lap(stage: str) -> None:
            nonlocal tick
            now = clock()
            if timings is not None:
                timings[stage] = timings.get(stage, 0.0) + now - tick
            tick = now

        if t is None:
            last = int(history.timestamp.max()) + 1 if history.n_interactions else 1
            t = self.default_times(states, last)
        merged = self.candidates(states, history, lap)
        if self.ranker is not None and "ranker" in stages:
            feats = self.features(states, merged, t)
            scores = self._ranker_logits(states, merged, feats)
        else:
            feats = [None] * len(states)
            scores = [m.merged.astype(np.float32) for m in merged]
        lap("ranker")
        out = []
        for b, (items, ranks, _, _, filtered) in enumerate(merged):
            ranked = np.lexsort((np.arange(len(items)), -scores[b]))
            order = ranked
            if "reranker" in stages and self.reranker.active and len(items):
                ages = (t[b] - self.catalogue.release_ts[items[ranked]]) / 86_400.0
                local = rerank(items[ranked], scores[b][ranked], k, self.reranker,
                               self.unit_embeddings, self.catalogue.category, ages)
                order = ranked[local]
            ranked_pos = np.empty(len(items), dtype=np.int64)
            ranked_pos[ranked] = np.arange(1, len(items) + 1)
            out.append(Served(items[order], scores[b][order].astype(np.float32),
                              [src.name for src in self.sources], ranks[order], order + 1,
                              ranked_pos[order], filtered))
        lap("reranker")
        if explain:
            for b, served in enumerate(out):
                self._explain(states[b], served, merged[b], feats[b], k)
        return out

    def candidates(self, states: list[UserState], history: Dataset,
                   lap: Any = None) -> list[Candidates]:
        """Stages 1-3 for a batch: each user's :class:`Candidates`. ``lap(stage)`` is called
        after each stage."""
        lap = lap or (lambda stage: None)
        exclude = [self.exclusions(s) for s in states]
        proposals: dict[str, list[Proposal]] = {}
        for src in self.sources:
            proposals[src.name] = src.propose(states, exclude, history)
            lap(f"source:{src.name}")
        merged = [self._merge(b, proposals) for b in range(len(states))]
        lap("merge")
        out = []
        for b, c in enumerate(merged):
            keep = ~np.isin(c.items, exclude[b])
            out.append(Candidates(c.items[keep], c.ranks[keep], c.scores[keep], c.merged[keep],
                                  int((~keep).sum())))
        lap("filters")
        return out

    def _merge(self, b: int, proposals: dict[str, list[Proposal]]) -> Candidates:
        """The union of the sources' candidates of user ``b``, in merged order (reciprocal-rank
        fusion of the sources' ranks)."""
        names = [s.name for s in self.sources]
        props = [proposals[n][b] for n in names]
        items = np.unique(np.concatenate([p[0] for p in props])) if props else \
            np.zeros(0, np.int64)
        ranks = np.zeros((len(items), len(names)), dtype=np.int64)
        scores = np.full((len(items), len(names)), np.nan)
        for j, (its, sc) in enumerate(props):
            if len(its):
                rows = np.searchsorted(items, its)
                ranks[rows, j] = np.arange(1, len(its) + 1)
                scores[rows, j] = sc
        rrf = np.where(ranks > 0, 1.0 / (RRF_K + ranks), 0.0).sum(1)
        order = np.lexsort((items, -rrf))
        return Candidates(items[order], ranks[order], scores[order], rrf[order], 0)

    def features(self, states: list[UserState], cands: list[Candidates],
                 t: np.ndarray) -> list[np.ndarray]:
        """The ranker's features of each user's candidates, float32 [m_b, F] per user, in
        :attr:`feature_names` order: the click features of the candidates (from the users' own
        events, batch position as the user id) and, per source, ``source:NAME`` =
        ``1 / (1 + rank)`` and ``source_score:NAME`` = its score minus its best score for the
        user (0 for its top item; one below its lowest for an item it did not propose)."""
        items = [c.items for c in cands]
        if not self.feature_names:
            return [np.zeros((len(i), 0), np.float32) for i in items]
        counts = [s.n_events for s in states]
        ev_user = np.repeat(np.arange(len(states)), counts)
        cat_items = np.concatenate([s.items for s in states]) if states else np.zeros(0)
        ev_ts = np.concatenate([s.timestamps for s in states]) if states else np.zeros(0)
        sess = None
        if states and all(s.session is not None for s in states):
            sess = np.concatenate([s.session.astype(np.int64) + (b << 40)
                                   for b, s in enumerate(states)])
        events = Events(ev_user, cat_items, ev_ts, sess, self.catalogue)
        profiles = self.profiles.take(np.array([s.user for s in states]),
                                      unknown=Profiles(np.zeros(0), np.zeros(0), t))
        n = [len(i) for i in items]
        q_user = np.repeat(np.arange(len(states)), n)
        q_item = np.concatenate(items) if items else np.zeros(0, np.int64)
        clicks = click_features(events, self.catalogue, profiles, q_user, q_item,
                                np.repeat(t, n))
        src_index = {s.name: j for j, s in enumerate(self.sources)}
        S = len(self.sources)
        all_ranks = np.concatenate([c.ranks for c in cands]) if cands else np.zeros((0, S))
        gaps = np.concatenate([_score_gaps(c.scores) for c in cands]) if cands else \
            np.zeros((0, S))
        cols = []
        for name in self.feature_names:
            if name in FEATURE_NAMES:
                cols.append(clicks[:, FEATURE_NAMES.index(name)])
                continue
            kind, _, src = name.partition(":")
            j = src_index.get(src)  # a source removed from a running system proposes nothing
            if kind == "source":
                r = all_ranks[:, j] if j is not None else np.zeros(len(all_ranks))
                cols.append(np.where(r > 0, 1.0 / (1.0 + r), 0.0))
            else:
                cols.append(gaps[:, j] if j is not None else np.full(len(gaps), -1.0))
        feats = np.stack(cols, 1).astype(np.float32)
        return np.split(feats, np.cumsum(n)[:-1])

    @torch.no_grad()
    def _logits(self, users: np.ndarray, items: np.ndarray, x: np.ndarray) -> np.ndarray:
        m = self.ranker.model
        dev = m.device
        out = m.click_logits(torch.as_tensor(users, dtype=torch.long, device=dev),
                             torch.as_tensor(items, dtype=torch.long, device=dev),
                             torch.as_tensor(x, device=dev))
        return out.float().cpu().numpy()

    def _ranker_logits(self, states: list[UserState], merged: list[Candidates], feats: list
                       ) -> list[np.ndarray]:
        n = [len(m.items) for m in merged]
        if sum(n) == 0:
            return [np.zeros(0, np.float32) for _ in merged]  # nothing to rank
        users = np.repeat(np.array([max(s.user, 0) for s in states]), n)
        items = np.concatenate([m.items for m in merged])
        logits = self._logits(users, items, np.concatenate(feats))
        return np.split(logits, np.cumsum(n)[:-1])

    # ------------------------------------------------------------------ explanations
    def _explain(self, state: UserState, served: Served, merged: Candidates,
                 feats: np.ndarray | None, k: int) -> None:
        top = served.items[:k]
        if self.ranker is not None and feats is not None and len(top):
            items = merged.items
            pos = {int(i): j for j, i in enumerate(items)}
            rows = np.array([pos[int(i)] for i in top])
            x = feats[rows]
            base = self._logits(np.full(len(top), max(state.user, 0)), top, x)
            means = self.feature_means if self.feature_means is not None else x.mean(0)
            F = x.shape[1]
            occl = np.repeat(x, F, axis=0)
            occl[np.arange(len(occl)), np.tile(np.arange(F), len(top))] = np.tile(means, len(top))
            alt = self._logits(np.full(len(occl), max(state.user, 0)), np.repeat(top, F), occl)
            contrib = base[:, None] - alt.reshape(len(top), F)
            for r in range(len(top)):
                best = np.argsort(-np.abs(contrib[r]), kind="stable")[:3]
                served.notes.setdefault(r, {})["ranker"] = [
                    {"feature": self.feature_names[j], "value": float(x[r, j]),
                     "contribution": float(contrib[r, j])} for j in best]
        for src in self.sources:
            if not isinstance(src, SessionSource) or not isinstance(src.model, Explainer):
                continue
            session = src.sessions([state])[0]
            if not len(session.items):
                continue
            _, attention = src.model.explain_session(session)
            weights = attention[-1].mean(0)[-1].cpu().numpy()  # last layer, last position
            order = np.argsort(-weights, kind="stable")[:3]
            attended = [{"item": int(session.items[p]), "weight": float(weights[p])}
                        for p in order]
            j = served.source_names.index(src.name)
            for r in range(min(k, len(served.items))):
                if served.ranks[r, j] > 0:
                    served.notes.setdefault(r, {})["attended"] = attended

    # ------------------------------------------------------------------ the contract
    def _history_index(self, history: Dataset) -> HistoryIndex:
        if self._index is None or self._index[0] is not history:
            self._index = (history, HistoryIndex(history, self.blocks))
        return self._index[1]

    @torch.no_grad()
    def score(self, users: torch.Tensor, history: Dataset) -> torch.Tensor:
        """The final order of each user's candidates as scores (``n - position``), ``-inf``
        for every item that is not a candidate, [B, n_items]."""
        states = self._history_index(history).states(users.cpu().numpy())
        out = torch.full((len(states), self.n_items), float("-inf"))
        for b, served in enumerate(self.serve(states, history)):
            n = len(served.items)
            out[b, torch.as_tensor(served.items)] = torch.arange(n, 0, -1, dtype=torch.float32)
        return out.to(users.device)


def _score_gaps(scores: np.ndarray) -> np.ndarray:
    """Per source (column), each candidate's score minus the source's best score for the user;
    a candidate the source did not propose (NaN) gets one below the source's lowest gap (-1
    when the source proposed nothing)."""
    out = np.empty_like(scores, dtype=np.float64)
    for j in range(scores.shape[1]):
        col = scores[:, j]
        present = ~np.isnan(col)
        if present.any():
            gap = col - col[present].max()
            out[:, j] = np.where(present, gap, gap[present].min() - 1.0)
        else:
            out[:, j] = -1.0
    return out


# ============================================================================ building
def _check_same_data(runs: dict[str, Run]) -> tuple[Dataset, Split]:
    first_name, first = next(iter(runs.items()))
    for name, r in runs.items():
        if (r.dataset.path, r.dataset.n_users, r.dataset.n_items) != (
                first.dataset.path, first.dataset.n_users, first.dataset.n_items):
            raise SystemConfigError(f"runs {first_name!r} and {name!r} were trained on different "
                              "datasets; a system needs runs of one dataset")
        if not np.array_equal(r.split.assign, first.split.assign):
            raise SystemConfigError(f"runs {first_name!r} and {name!r} were trained on different "
                              "splits; train them with the same split")
    return first.dataset, first.split


def _model_named(name: str, sources: list[Source], data: str | None) -> Any:
    """The model of the source called ``name``, or of the run directory ``name``."""
    for s in sources:
        if s.name == name and isinstance(s, ModelSource):
            return s.model
    try:
        return load_run(name, data=data).model
    except (RunError, FileNotFoundError):
        raise SystemConfigError(f"{name!r} is neither a source of the system with a model "
                                "nor a run directory") from None


def _item_embeddings(cfg: dict[str, Any], runs: dict[str, Run],
                     sources: list[Source]) -> np.ndarray | None:
    """Unit item embeddings for diversity: the named source's or run's, else the first source
    whose model has item embeddings."""
    from streamrec.serve.embeddings import item_matrix

    want = cfg["reranker"]["embeddings"]
    model = None
    if want:
        model = _model_named(want, sources, cfg["data"])
        require(model, ItemEmbedder, "give item embeddings for the re-ranker")
    else:
        for s in sources:
            if isinstance(s, ModelSource) and isinstance(s.model, ItemEmbedder):
                model = s.model
                break
    if model is None:
        return None
    e = item_matrix(model)
    return (e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _make_sources(cfg: dict[str, Any], runs: dict[str, Run], train: Dataset,
                  tables: dict[str, Any] | None = None) -> list[Source]:
    from streamrec.models.base import SessionRecommender, VectorRetriever

    out: list[Source] = []
    for s in cfg["sources"]:
        kind, name, quota = s["kind"], s["name"], s["quota"]
        if kind == "popular":
            out.append(PopularSource(name, quota, train, s["half_life_days"]))
            continue
        run = runs[name]
        if kind == "auto":
            kind = ("retrieval" if isinstance(run.model, VectorRetriever)
                    else "session" if isinstance(run.model, SessionRecommender) else "scores")
        if kind == "retrieval":
            out.append(RetrievalSource(name, quota, run, s["index"]))
        elif kind == "session":
            out.append(SessionSource(name, quota, run))
        elif kind == "neighbours":
            table = (tables or {}).get(name)
            out.append(NeighboursSource(name, quota, run, s["recent"], s["per_item"],
                                        s["decay"], table))
        else:
            out.append(ScoresSource(name, quota, run))
    return out


def _catalogue(cfg: dict[str, Any], ds: Dataset, train: Dataset, runs: dict[str, Run],
               sources: list[Source]) -> Catalogue:
    vectors = None
    want = cfg["features"]["vectors"]
    if want:
        from streamrec.serve.embeddings import item_matrix

        vectors = item_matrix(_model_named(want, sources, cfg["data"]))
    return Catalogue.from_dataset(ds, vectors=vectors, history=train)


def split_validation_users(split: Split, ds: Dataset, seed: int, cap: int
                           ) -> tuple[np.ndarray, np.ndarray]:
    """The validation users in two random halves (seeded): (ranker users, tuning users); the
    first half is capped at ``cap`` users."""
    users = np.unique(ds.user[split.mask("valid")])
    perm = np.random.default_rng([seed, 0x5E1]).permutation(users)
    half = len(perm) // 2
    return np.sort(perm[:half][:cap]), np.sort(perm[half:])


def ranker_training_data(
    system: System, ds: Dataset, split: Split, users: np.ndarray, negatives: int, seed: int,
    batch: int = 256,
) -> Dataset:
    """The candidates the system's sources produce for ``users`` from the training history,
    as impressions: each user's validation item (when it is a candidate) is a click, up to
    ``negatives`` other candidates (drawn at random) are not. Features: the system's
    :attr:`System.feature_names`. The interactions are the training view (so the dataset is a
    complete one)."""
    train = split.train(ds)
    index = HistoryIndex(train)
    valid = split.part(ds, "valid")
    target = np.full(ds.n_users, -1, dtype=np.int64)
    target[valid.user] = valid.item
    rng = np.random.default_rng([seed, 0xCA7D])
    rows_u, rows_i, rows_x, rows_y, rows_t = [], [], [], [], []
    for s in range(0, len(users), batch):
        states = index.states(users[s : s + batch])
        t = system.default_times(states, int(train.timestamp.max()) + 1)
        cands = system.candidates(states, train)
        items = [c.items for c in cands]
        feats = system.features(states, cands, t)
        for b, st in enumerate(states):
            u, its = st.user, items[b]
            pos = np.flatnonzero(its == target[u])
            neg = np.flatnonzero(its != target[u])
            if len(neg) > negatives:
                neg = np.sort(rng.choice(neg, negatives, replace=False))
            rows = np.concatenate([pos, neg])
            rows_u.append(np.full(len(rows), u))
            rows_i.append(its[rows])
            rows_x.append(feats[b][rows])
            rows_y.append(np.isin(rows, pos).astype(np.int8))
            rows_t.append(np.full(len(rows), t[b]))
    imp = {
        "user": np.concatenate(rows_u).astype(np.int32),
        "item": np.concatenate(rows_i).astype(np.int32),
        "features": np.concatenate(rows_x).astype(np.float32),
        "clicked": np.concatenate(rows_y).astype(np.int8),
        "timestamp": np.concatenate(rows_t).astype(np.int64),
    }
    meta = {k: v for k, v in ds.meta.items() if k in ("categories", "world")}
    meta["impression_features"] = list(system.feature_names)
    meta["source"] = {"format": "system candidates", "users": int(len(users))}
    return Dataset(name=f"{ds.name}-candidates", user_ids=ds.user_ids, item_ids=ds.item_ids,
                   inter=dict(train.inter), items=ds.items, users=ds.users, impressions=imp,
                   meta=meta)


def build_system(
    config: str | Path | dict[str, Any],
    out: str | Path,
    overwrite: bool = False,
    console: Any = None,
    ranker_overrides: Sequence[str] = (),
) -> Run:
    """Build a system directory from a config (a file or its parsed tables) and load it.

    Checks that every run exists, was trained on the same dataset and split and can play its
    part; builds the neighbour tables; trains the learned ranker on the validation candidates;
    tunes the re-ranker when asked (``reranker.tune``); writes ``system.json``.
    """
    import shutil

    from rich.console import Console

    console = console or Console(stderr=True, quiet=True)
    cfg = read_config(config) if not isinstance(config, dict) else parse_config(config)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SystemConfigError(f"--out {out} is a file; give a directory for the system")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise SystemConfigError(f"{out} is not empty; choose another --out or pass --overwrite")
        if not (out / SYSTEM_FILE).is_file() and not (out / BUILDING_FILE).is_file():
            raise SystemConfigError(f"--overwrite refuses to clear {out}: it is not a system "
                              f"directory (no {SYSTEM_FILE})")
        shutil.rmtree(out)
    runs = {}
    for s in cfg["sources"]:
        if s["kind"] != "popular":
            try:
                runs[s["name"]] = load_run(s["run"], data=cfg["data"])
            except (RunError, FileNotFoundError) as e:
                raise SystemConfigError(f"source {s['name']!r}: {e}") from None
    if not runs:
        raise SystemConfigError("a system needs at least one source with a trained run")
    ds, split = _check_same_data(runs)
    train = split.train(ds)
    t0 = time.perf_counter()
    sources = _make_sources(cfg, runs, train)
    catalogue = _catalogue(cfg, ds, train, runs, sources)
    profiles = Profiles.from_dataset(ds)
    embeddings = _item_embeddings(cfg, runs, sources)
    out.mkdir(parents=True)
    (out / BUILDING_FILE).write_text("an interrupted `streamrec system build`: rebuild with "
                                     "--overwrite\n")
    tables = {s.name: (s.neighbours, s.cosines) for s in sources
              if isinstance(s, NeighboursSource)}
    for name, (nbr, cos) in tables.items():
        np.savez(out / f"neighbours-{name}.npz", neighbours=nbr, cosines=cos)
    rk = cfg["ranker"]
    ranker_users, tune_users = split_validation_users(split, ds, cfg["seed"], rk["users"])
    ranker_run = None
    feature_means = None
    if rk["kind"] == "click":
        ranker_run = load_run(rk["run"], data=cfg["data"])
        require(ranker_run.model, ClickModel, "rank candidates")
        feature_means = ranker_run.dataset.impressions["features"].mean(0) \
            if ranker_run.dataset.impressions is not None else None
    elif rk["kind"] == "learned":
        if not len(ranker_users):
            raise SystemConfigError("the learned ranker needs validation users (the split has "
                              "none); use ranker.kind = 'click' or 'none'")
        names = list(FEATURE_NAMES) + ([f"{kind}:{s.name}" for s in sources
                                         for kind in ("source", "source_score")]
                                        if rk["source_features"] else [])
        probe = System(cfg, train, sources, catalogue, profiles, None)
        probe.feature_names = names
        console.print(f"building the ranker's training data: the candidates of "
                      f"{len(ranker_users):,} validation users ...")
        data = ranker_training_data(probe, ds, split, ranker_users, rk["negatives"],
                                    cfg["seed"])
        data.save(out / "ranker-data")
        from streamrec.run import train_run

        options = ["diagnostics=false", *rk["options"], *ranker_overrides]
        ranker_run = train_run(rk["model"], out / "ranker-data", out / "ranker",
                               overrides=options, progress=False, console=console)
        feature_means = data.impressions["features"].mean(0)
    rr = {k: v for k, v in cfg["reranker"].items() if k not in ("embeddings", "tune")}
    reranker = RerankOptions.from_dict(rr)
    system = System(cfg, train, sources, catalogue, profiles, ranker_run, feature_means,
                    reranker, embeddings)
    tuning = None
    if cfg["reranker"]["tune"]:
        from streamrec.serve.tune import tune_reranker

        reranker, tuning = tune_reranker(system, ds, split, tune_users, console)
        system.reranker = reranker
    spec = {
        "format": FORMAT,
        "config": cfg,
        "data": {"path": str(Path(ds.path).resolve()) if ds.path is not None else None,
                 "name": ds.name, "n_users": ds.n_users, "n_items": ds.n_items},
        "sources": [s.describe() for s in sources],
        "ranker": {"kind": rk["kind"], "features": system.feature_names,
                   "feature_means": None if feature_means is None else
                   np.asarray(feature_means).tolist(),
                   "run": str(ranker_run.path) if ranker_run is not None else None,
                   "trained_on_users": int(len(ranker_users)) if rk["kind"] == "learned" else 0},
        "reranker": reranker.to_dict(),
        "reranker_tuning": tuning,
        "tune_users": tune_users.tolist(),
        "build_seconds": time.perf_counter() - t0,
    }
    split.save(out)
    write_text_atomic(out / SYSTEM_FILE, json.dumps(spec, indent=2, default=json_default))
    (out / BUILDING_FILE).unlink()
    return load_system(out, data=cfg["data"])


class SystemRun(Run):
    """A loaded system directory: a :class:`~streamrec.run.Run` whose model is a
    :class:`System`. Its validation stage is judged on the validation users the ranker did not
    learn from."""

    tune_users: np.ndarray = np.zeros(0, np.int64)

    @property
    def finished(self) -> bool:
        return True

    def progress_note(self) -> str | None:
        return None

    def evaluate(self, stage: str = "test", ks: Sequence[int] = (10, 20),
                 sampled: int | None = None, batch_size: int = 256,
                 test_history: str = "train+valid",
                 average: str = "users-with-test") -> dict[str, Any]:
        from streamrec.eval.evaluator import evaluate_ranking

        users = self.tune_users if stage == "valid" and len(self.tune_users) else None
        return evaluate_ranking(self.model, self.dataset, self.split, stage, ks,
                                batch_size=batch_size, sampled=sampled, users=users,
                                test_history=test_history, average=average)


def is_system_dir(path: str | Path) -> bool:
    """Whether ``path`` is a system directory (it holds ``system.json``)."""
    return (Path(path) / SYSTEM_FILE).is_file()


def load_system(path: str | Path, data: str | Path | None = None) -> SystemRun:
    """Load a system directory (sources' runs, ranker, re-ranker) as a :class:`SystemRun`."""
    path = Path(path)
    f = path / SYSTEM_FILE
    if not f.is_file() and (path / BUILDING_FILE).is_file():
        raise SystemConfigError(f"{path} is a system build that was interrupted; build it again "
                                "with `streamrec system build CONFIG --out DIR --overwrite`")
    if not f.is_file():
        raise SystemConfigError(f"{path} is not a system directory (no {SYSTEM_FILE}); build one "
                          "with `streamrec system build CONFIG --out DIR`")
    try:
        spec = json.loads(f.read_text())
        cfg = spec["config"]
    except (ValueError, KeyError, TypeError):
        raise SystemConfigError(f"{f} is damaged; rebuild the system (--overwrite)") from None
    data = data if data is not None else cfg.get("data")
    runs = {}
    for s in cfg["sources"]:
        if s["kind"] != "popular":
            try:
                runs[s["name"]] = load_run(s["run"], data=data)
            except (RunError, FileNotFoundError) as e:
                raise SystemConfigError(f"system {path}: source {s['name']!r}: {e}") from None
    ds, split = _check_same_data(runs)
    train = split.train(ds)
    tables = {}
    for s in cfg["sources"]:
        if s["kind"] == "neighbours":
            with np.load(path / f"neighbours-{s['name']}.npz") as z:
                tables[s["name"]] = (z["neighbours"], z["cosines"])
    sources = _make_sources(cfg, runs, train, tables)
    ranker = None
    rk = spec["ranker"]
    if rk["kind"] != "none" and rk.get("run"):
        ranker = load_run(rk["run"], data=None if rk["kind"] == "learned" else data)
    means = np.asarray(rk["feature_means"], dtype=np.float32) \
        if rk.get("feature_means") is not None else None
    system = System(cfg, train, sources, _catalogue(cfg, ds, train, runs, sources),
                    Profiles.from_dataset(ds), ranker, means,
                    RerankOptions.from_dict(spec["reranker"]),
                    _item_embeddings(cfg, runs, sources))
    system.eval()
    results = {}
    if (path / "results.json").is_file():
        results = json.loads((path / "results.json").read_text())
    config = {"model": "system", "system": spec, "data": spec["data"],
              "model_config": {}, "train_config": {}, "split": split.protocol()}
    run = SystemRun(path, config, ds, split, system, results)
    run.tune_users = np.asarray(spec.get("tune_users", []), dtype=np.int64)
    return run


def _feature_label(name: str) -> str:
    kind, _, src = name.partition(":")
    return {"source": src, "source_score": f"{src} score"}.get(kind, name)


def why(row: dict[str, Any], ds: Dataset) -> str:
    """One sentence on why an item was served, from its explanation."""
    parts = []
    src = row.get("sources", [])
    if src:
        pos = row["positions"]
        parts.append("proposed by " + ", ".join(f"{s} (#{pos[f'source:{s}']})" for s in src))
    ranker = row.get("ranker")
    if ranker:
        parts.append("ranker: " + ", ".join(
            f"{_feature_label(c['feature'])} {c['contribution']:+.2f}" for c in ranker[:2]))
    attended = row.get("attended")
    if attended:
        titles = ds.items.get("title")
        names = [str(titles[a["item"]]) if titles is not None else str(ds.item_ids[a["item"]])
                 for a in attended[:2]]
        parts.append("after " + ", ".join(names))
    return "; ".join(parts)


def system_recommendations(
    run: SystemRun, user: str | int, k: int = 10, explain: bool = False, stage: str = "test"
) -> list[dict[str, Any]]:
    """Top-``k`` of a system for an original user id, from the history visible at ``stage``:
    ``[{"rank", "item", "score", "title"?, "category"?, ("sources", "positions", "ranker",
    "attended", "why") with explain}, ...]``."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    ds = run.dataset
    u = ds.user_index(user)
    history = run.split.history(ds, stage)
    state = HistoryIndex(history, run.model.blocks).state(u)
    served = run.model.serve([state], history, k=k, explain=explain)[0]
    rows = ds.item_rows(served.items[:k], served.scores[:k])
    if explain:
        for j, row in enumerate(rows):
            info = served.info(j)
            text = why(info, ds)
            info["attended"] = [{**a, "item": str(ds.item_ids[a["item"]])}
                                for a in info.get("attended", [])]
            if not info["attended"]:
                info.pop("attended")
            row.update(info)
            row["why"] = text
    return rows
