"""Draw the frequency responses of gf-cf, chebycf and bspm (the papers' Gowalla settings) on
one figure.

Each model is fitted on the training view of a small dataset (default: MovieLens-100k, the
leave-last-out split, imported on first use) and its gain ``h(λ)`` is drawn against the
eigenvalue ``λ`` of the normalised item-item graph ``P̃ = R̃ᵀR̃`` (``λ = 1``: the smoothest
signals), each curve divided by its largest magnitude (a ranking does not change when the
scores are scaled): on the left over [0, 1], on the right at each eigenvalue of this dataset,
ordered from the smoothest (log scale: most eigenvalues are small). The lower panels show
where the dataset's eigenvalues lie. The ideal low-pass steps sit at the ``k``-th largest
eigenvalue of this dataset, so they move with the data (on Gowalla the cut-offs are lower).
chebycf and bspm are drawn with the papers' ``k`` and weights fixed (their defaults are
``"auto"``: chosen on validation, or the size rule, which would move the steps on this
dataset; :mod:`streamrec.models.spectral_auto`).

    python scripts/plot_filters.py [--data DIR] [--out docs/filters.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RAW = ROOT.parent / "shared" / "data" / "movielens-100k" / "raw"
DEFAULT_DATA = ROOT / "benchmarks" / "work" / "spectral" / "ml100k"
MODELS = ("gf-cf", "chebycf", "bspm")
#: the papers' Gowalla values of the options that default to "auto"
PAPER = {"chebycf": ["k=512", "alpha=0.2", "beta=0.4"],
         "bspm": ["k=448", "beta=0.2", "sharpen_time=2.5"]}


def dataset_dir(path: Path) -> Path:
    """``path`` as a StreamRec dataset; MovieLens-100k is imported there when it is missing."""
    if not (path / "meta.json").is_file():
        from streamrec.data.importers import import_dataset

        import_dataset("movielens-100k", RAW, path)
    return path


def responses(data: Path, n_points: int = 401) -> tuple[dict, dict, np.ndarray, str]:
    """``({model: (λ, h)} on a grid of [0, 1], {model: h at the dataset's eigenvalues},
    the eigenvalues of P̃ [n_items] descending, dataset name)`` for the default models."""
    from streamrec.data.dataset import load_dataset
    from streamrec.data.splits import default_split_spec, split_from_spec
    from streamrec.models import get_model_class
    from streamrec.models.chebycf import frequency_response
    from streamrec.models.gfcf import normalized_rating_matrix
    from streamrec.train.config import build_configs

    ds = load_dataset(data)
    train = split_from_spec(ds, default_split_spec(ds)).train(ds)
    r_norm, _ = normalized_rating_matrix(train.csr())
    if r_norm.shape[0] * r_norm.shape[1] <= 2**25:
        s = np.linalg.svd(r_norm.toarray().astype(np.float64), compute_uv=False)
    else:  # a large dataset: its top 1,000 eigenvalues only
        from scipy.sparse.linalg import svds

        s = np.sort(svds(r_norm, k=min(1000, min(r_norm.shape) - 1),
                         return_singular_vectors=False))[::-1]
    lam = np.concatenate([s**2, np.zeros(max(0, r_norm.shape[1] - len(s)))])
    grid, at_data = {}, {}
    for name in MODELS:
        cfg, _, _ = build_configs(name, overrides=PAPER.get(name, []))
        model = get_model_class(name)(cfg, train)
        model.fit(train)
        grid[name] = frequency_response(model, n_points=n_points)
        at_data[name] = frequency_response(model, lam)[1]
    return grid, at_data, lam, ds.name


def plot(grid: dict, at_data: dict, lam: np.ndarray, name: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 6.4), sharex="col",
                             gridspec_kw={"height_ratios": [3, 1]})
    (top, right), (bottom, right_bottom) = axes
    labels = {"gf-cf": "gf-cf: λ + 0.3·ideal(k=256)",
              "chebycf": "chebycf: Chebyshev K=8, plateau φ=1.5, + 0.2·ideal(512), β=0.4",
              "bspm": "bspm: blur (Euler, T=1) + 0.2·ideal(448), sharpen (RK4, T=2.5)"}
    rank = np.arange(1, len(lam) + 1)
    for i, model in enumerate(grid):
        x, h = grid[model]
        top.plot(x, h / np.abs(h).max(), lw=2, color=f"C{i}", label=labels.get(model, model))
        g = at_data[model]
        right.plot(rank, g / np.abs(g).max(), lw=1.6, color=f"C{i}", label=model)
    for ax in (top, right):
        ax.axhline(0, color="grey", lw=0.8)
        ax.grid(alpha=0.3)
    top.set_ylabel("gain h(λ) / max |h|")
    top.set_title("Gain against the eigenvalue λ of P̃ = R̃ᵀR̃")
    top.legend(fontsize=8, loc="upper left")
    right.set_title(f"Gain at each graph frequency of {name}, smoothest first")
    right.set_xscale("log")
    right.legend(fontsize=8, loc="lower left")
    bottom.hist(lam, bins=80, range=(0, 1), color="C7")
    bottom.set_yscale("log")
    bottom.set_xlabel("λ (1 = smoothest signal)")
    bottom.set_ylabel(f"eigenvalues\n({name})")
    right_bottom.plot(rank, lam, color="C7")
    right_bottom.set_yscale("log")
    right_bottom.set_xlabel("rank of the eigenvalue (1 = largest λ)")
    right_bottom.set_ylabel("λ")
    fig.suptitle(f"Frequency responses of the closed-form graph filters (fitted on {name})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA,
                    help="a StreamRec dataset directory (MovieLens-100k is imported there "
                         "when missing)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "filters.png")
    args = ap.parse_args()
    grid, at_data, lam, name = responses(dataset_dir(args.data))
    plot(grid, at_data, lam, name, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
