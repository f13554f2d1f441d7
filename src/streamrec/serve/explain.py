"""Explanations of the session transformer: which past items it attended to.

All scores come from the hidden state at the **last position** of the user's history (the most
recent event), so the attention row of that position is what every recommendation was computed
from. :func:`explain_user` reports

* ``attention``: one weight per past item, summing to 1 —
  - default: the last layer's attention at the last position, averaged over the heads;
  - ``rollout=True``: attention rollout (Abnar & Zuidema, ACL 2020). For each layer
    ``Â_l = normalise_rows(mean_heads(A_l) + I)`` (the identity stands for the residual
    connection), and ``R = Â_n ··· Â_1``; the last row of ``R`` says how much each input
    position flows into the last position through all layers;
* for each recommended item, the past items ranked by that weight, with the similarity
  ``cos(e_past, e_rec)`` of their item embeddings: the attention row is shared by all
  recommendations (they were scored from the same query), the similarity says which of the
  attended items a recommendation is closest to;
* ``matrix``: the full head-averaged attention matrix of the session (last layer or rollout),
  positions x positions, for the heat map of :func:`plot_attention`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamrec.models.base import Explainer, Session, require


def attention_rollout(attn: torch.Tensor) -> torch.Tensor:
    """Rollout of per-layer attention [n_layers, H, L, L] -> [L, L] (rows sum to 1).

    Heads are averaged, the identity (residual) is added and rows renormalised per layer, and
    the layers are multiplied from the first to the last.
    """
    n_layers, _, L, _ = attn.shape
    eye = torch.eye(L, dtype=attn.dtype, device=attn.device)
    rollout = eye
    for layer in range(n_layers):
        a = attn[layer].mean(0) + eye
        a = a / a.sum(-1, keepdim=True)
        rollout = a @ rollout
    return rollout


def _item_row(ds: Any, i: int) -> dict[str, Any]:
    row: dict[str, Any] = {"item": str(ds.item_ids[i])}
    for col in ("title", "category"):
        if col in ds.items:
            v = ds.items[col][i]
            row[col] = v.item() if isinstance(v, np.generic) else v
    return row


@torch.no_grad()
def explain_session(
    run: Any,
    session: Session,
    k: int = 10,
    rollout: bool = False,
    top_past: int = 5,
    exclude: np.ndarray | None = None,
) -> dict[str, Any]:
    """Explain the top-``k`` recommendations after a session of internal item ids (oldest
    first) of an :class:`~streamrec.models.base.Explainer` run (the transformer).

    exclude: internal item ids never recommended (default: the session's items).
    Returns the dict described in the module docstring (original ids in it).
    """
    model = run.model
    require(model, Explainer, "explain its recommendations by attention")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    ds = run.dataset
    if len(session.items) == 0:
        raise ValueError("the session is empty: nothing to explain")
    scores, attn = model.explain_session(session)  # [n_items], [n_layers, H, n, n]
    n = attn.shape[-1]
    matrix = attention_rollout(attn) if rollout else attn[-1].mean(0)
    weights = matrix[-1].cpu().numpy()  # [n]: the last position's row
    past = np.asarray(session.items, dtype=np.int64)[-n:]

    scores = scores.clone()
    excl = past if exclude is None else np.asarray(exclude, dtype=np.int64)
    if len(excl):
        scores[torch.as_tensor(excl, device=scores.device)] = float("-inf")
    kk = min(k, int(torch.isfinite(scores).sum()))
    top = torch.topk(scores, kk)
    emb = torch.nn.functional.normalize(model.item_embeddings(), dim=-1)
    order = np.argsort(-weights, kind="stable")[:top_past]
    recs = []
    for rank, (i, s) in enumerate(zip(top.indices.tolist(), top.values.tolist()), start=1):
        sim = (emb[past[order]] @ emb[i]).cpu().numpy()
        recs.append({
            "rank": rank,
            **_item_row(ds, i),
            "score": float(s),
            "attended": [
                {"position": int(p), **_item_row(ds, int(past[p])),
                 "weight": float(weights[p]), "similarity": float(sim[j])}
                for j, p in enumerate(order)
            ],
        })
    return {
        "method": "attention rollout (Abnar & Zuidema 2020)" if rollout
        else "last layer, last position, averaged over heads",
        "session": [_item_row(ds, int(i)) for i in past],
        "attention": weights.tolist(),
        "matrix": matrix.cpu().numpy().tolist(),
        "recommendations": recs,
    }


def explain_user(
    run: Any, user_id: str | int, k: int = 10, rollout: bool = False, stage: str = "test"
) -> dict[str, Any]:
    """Explain the top-``k`` recommendations of a user (original id) of a transformer run.

    The session is the user's most recent events visible at ``stage`` (default: training +
    validation) that the model reads; the user's seen items are not recommended. See the module
    docstring for what is returned (plus ``user``).
    """
    model = run.model
    require(model, Explainer, "explain its recommendations by attention")
    u = run.dataset.user_index(user_id)
    history = run.split.history(run.dataset, stage)
    session = model.recent_session(u, history)
    if len(session.items) == 0:
        raise ValueError(f"user {user_id!r} has no history to explain")
    seen = history.csr()[u].indices
    out = explain_session(run, session, k=k, rollout=rollout, exclude=seen)
    return {"user": str(user_id), **out}


def plot_attention(explanation: dict[str, Any], path: str | Path, max_items: int = 30) -> Path:
    """Heat maps of an explanation as a PNG: the session's attention matrix (query position x
    attended position) and, per recommended item, the attention on each past item scaled by
    their embedding similarity (clipped at 0). Only the last ``max_items`` positions are drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    m = np.asarray(explanation["matrix"])[-max_items:, -max_items:]
    labels = [str(r.get("title", r["item"]))[:24] for r in explanation["session"]][-max_items:]
    recs = explanation["recommendations"]
    w = np.asarray(explanation["attention"])[-max_items:]
    n = len(labels)
    fig, axes = plt.subplots(
        1, 2, figsize=(6 + 0.3 * n, 4 + 0.25 * n), gridspec_kw={"width_ratios": [1.2, 1]}
    )
    ax = axes[0]
    im = ax.imshow(m, cmap="viridis", vmin=0)
    ax.set_xticks(range(n), labels, rotation=90, fontsize=6)
    ax.set_yticks(range(n), labels, fontsize=6)
    ax.set_xlabel("attended past item")
    ax.set_ylabel("query position")
    ax.set_title(explanation["method"], fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046)
    # per recommendation: attention x similarity over the past items
    ax = axes[1]
    past = [r["item"] for r in explanation["session"]][-max_items:]
    grid = np.zeros((len(recs), n))
    for a, rec in enumerate(recs):
        for att in rec["attended"]:
            p = past.index(att["item"]) if att["item"] in past else None
            if p is not None:
                grid[a, p] = max(att["similarity"], 0.0)
    grid = grid * w[None, :]
    im = ax.imshow(grid, cmap="magma", aspect="auto", vmin=0)
    ax.set_xticks(range(n), labels, rotation=90, fontsize=6)
    ax.set_yticks(
        range(len(recs)), [str(r.get("title", r["item"]))[:24] for r in recs], fontsize=6
    )
    ax.set_xlabel("past item (top attended)")
    ax.set_title("recommendation: attention x similarity", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def format_table(explanation: dict[str, Any]) -> list[list[str]]:
    """Rows ``[rank, item, score, top attended past items (weight)]`` for a text table."""
    rows = []
    for rec in explanation["recommendations"]:
        attended = ", ".join(
            f"{a.get('title', a['item'])} ({a['weight']:.2f}, sim {a['similarity']:.2f})"
            for a in rec["attended"]
        )
        rows.append([str(rec["rank"]), str(rec.get("title", rec["item"])),
                     f"{rec['score']:.3f}", attended])
    return rows
