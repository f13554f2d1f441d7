"""The catalogue of a world: items and their text.

:func:`_make_items` draws category centroids, series and their episodes, item latents
[n_items, n_latent_true], quality, long-tailed popularity, durations and release times, the
nearest latent neighbours of every item [n_items, n_neighbours] and the sampling structure
used to draw items of a category by popularity; :func:`_item_text` gives every item a title
(2-6 words) and a synopsis (``text_len`` tokens) made of pseudo-words from category, general,
latent-position and series vocabularies. Also the small sampling helpers they use (Zipf draws,
the guide table :class:`_Guide`, segment offsets).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streamrec.data.world.config import _CATEGORY_MINUTES, DAY, WorldConfig, category_names

_KEY_SPAN = np.int64(1) << np.int64(40)  # composite keys: group * _KEY_SPAN + seconds

_WORD_ONSETS = (
    "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
    "br", "cr", "dr", "fl", "gr", "pl", "st", "tr", "sh", "ch", "th",
)  # fmt: skip
_WORD_VOWELS = ("a", "e", "i", "o", "u", "ai", "ou", "ea")
_WORD_CODAS = ("", "n", "r", "s", "l")
_NUMBER_WORDS = (
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty",
)  # fmt: skip


def _zipf_cdf(n: int, a: float = 1.0) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** a
    c = np.cumsum(w)
    return c / c[-1]


def _zipf_draw(rng: np.random.Generator, cdf: np.ndarray, size: int) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(cdf) - 1)


class _Guide:
    """``searchsorted(cum, x, side="right") - 1`` for a non-decreasing ``cum`` in O(1) per
    query (a guide table of 8 buckets per entry, then a short vectorised forward scan)."""

    def __init__(self, cum: np.ndarray) -> None:
        self.cum = np.asarray(cum, dtype=np.float64)
        self.padded = np.append(self.cum, np.inf)
        m = 8 * len(self.cum)
        self.scale = m / self.cum[-1] if self.cum[-1] > 0 else 0.0
        self.guide = np.searchsorted(self.cum, np.arange(m + 2) / max(self.scale, 1e-300),
                                     side="right") - 1  # fmt: skip
        self.steps = int(min(3, np.diff(self.guide).max(initial=0)))

    def search(self, x: np.ndarray) -> np.ndarray:
        shape = np.shape(x)
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        b = np.clip((x * self.scale).astype(np.int64), 0, len(self.guide) - 1)
        pos = self.guide[b]
        for _ in range(self.steps):
            pos += self.padded[pos + 1] <= x
        bad = np.flatnonzero(self.padded[pos + 1] <= x)
        if len(bad):
            pos[bad] = np.searchsorted(self.cum, x[bad], side="right") - 1
        return pos.reshape(shape)


def _segment_first(counts: np.ndarray) -> np.ndarray:
    """Start offsets of consecutive segments with the given lengths."""
    return np.cumsum(counts) - counts


def _make_vocab(cfg: WorldConfig, rng: np.random.Generator) -> dict[str, Any]:
    """Pseudo-words: category vocabularies, general words, latent word groups, extras."""
    C, d = cfg.n_categories, cfg.n_latent_true
    names = category_names(C)
    reserved = set(names) | set(_NUMBER_WORDS) | {"part"}
    n_cat_words = C * cfg.words_per_category
    n_latent_words = d * 2 * cfg.words_per_latent_group
    n_needed = n_cat_words + cfg.n_general_words + n_latent_words
    n_syl = len(_WORD_ONSETS) * len(_WORD_VOWELS)
    space = n_syl * n_syl * len(_WORD_CODAS)
    idx = rng.choice(space, size=min(space, n_needed + 64), replace=False)
    syl = [o + v for o in _WORD_ONSETS for v in _WORD_VOWELS]
    words: list[str] = []
    for i in idx.tolist():
        a, rest = divmod(i, n_syl * len(_WORD_CODAS))
        b, c = divmod(rest, len(_WORD_CODAS))
        w = syl[a] + syl[b] + _WORD_CODAS[c]
        if w not in reserved:
            words.append(w)
    if len(words) < n_needed:
        raise ValueError("WorldConfig asks for a larger vocabulary than the word generator has")
    cat_words = np.array(words[:n_cat_words], dtype=object).reshape(C, cfg.words_per_category)
    cat_words[:, 0] = names  # each category's most frequent word is its own name
    general = words[n_cat_words : n_cat_words + cfg.n_general_words]
    latent = words[n_cat_words + cfg.n_general_words : n_needed]
    extras = ["part", *_NUMBER_WORDS]
    vocab = np.array(list(cat_words.reshape(-1)) + general + latent + extras, dtype=object)
    return {
        "vocab": vocab,
        "cat_base": 0,
        "general_base": n_cat_words,
        "latent_base": n_cat_words + cfg.n_general_words,
        "extra_base": n_needed,
    }


def _join_tokens(vocab: np.ndarray, ids: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """One space-joined string per row; row ``r`` has ``lens[r]`` consecutive ``ids``."""
    n = len(lens)
    if n == 0:
        return np.array([], dtype=object)
    words = vocab[ids]
    sep_pos = np.cumsum(lens)[:-1] + np.arange(n - 1)  # separator after each row but the last
    total = len(ids) + n - 1
    is_sep = np.zeros(total, dtype=bool)
    is_sep[sep_pos] = True
    seq = np.empty(total, dtype=object)
    seq[is_sep] = "\n"
    seq[~is_sep] = words
    return np.array(" ".join(seq.tolist()).split(" \n "), dtype=object)


def _make_items(cfg: WorldConfig, rng: np.random.Generator) -> dict[str, Any]:
    """Catalogue: categories, series, latents, popularity, quality, times, text."""
    n, d, C = cfg.n_items, cfg.n_latent_true, cfg.n_categories
    T0 = cfg.start_ts
    t_end = T0 + int((cfg.signup_days + cfg.active_days) * DAY)
    centroids = rng.standard_normal((C, d)) * (cfg.category_scale / np.sqrt(d))
    cat_share = rng.gamma(4.0, 0.25, C)
    cat_share /= cat_share.sum()

    # series occupy the first "slots", standalone items the rest; ids are shuffled at the end
    lo, hi = cfg.series_len
    target = int(cfg.series_frac * n) if n - int(cfg.series_frac * n) >= C else max(0, n - C)
    lens = rng.integers(lo, hi + 1, size=target // max(1, lo) + 1)
    keep = np.searchsorted(np.cumsum(lens), target, side="right")
    ser_len = lens[:keep]
    n_ser = int(ser_len.sum())
    n_series = len(ser_len)
    ser_cat = rng.choice(C, size=n_series, p=cat_share)
    alone_cat = rng.choice(C, size=n - n_ser, p=cat_share)
    alone_cat[:C] = np.arange(C)  # every category has at least one (old) standalone item
    slot_series = np.concatenate([np.repeat(np.arange(n_series), ser_len),
                                  np.full(n - n_ser, -1)])  # fmt: skip
    slot_episode = np.full(n, -1)
    slot_episode[:n_ser] = np.arange(n_ser) - np.repeat(_segment_first(ser_len), ser_len)
    slot_cat = np.concatenate([ser_cat[slot_series[:n_ser]], alone_cat])
    in_ser = slot_series >= 0

    scale = 1.0 / np.sqrt(d)
    ser_lat = centroids[ser_cat] + cfg.item_spread * scale * rng.standard_normal((n_series, d))
    lat = centroids[slot_cat] + cfg.item_spread * scale * rng.standard_normal((n, d))
    lat[in_ser] = ser_lat[slot_series[in_ser]] + (
        cfg.episode_spread * scale * rng.standard_normal((n_ser, d))
    )

    ser_q = rng.standard_normal(n_series)
    quality = rng.standard_normal(n)
    quality[in_ser] = 0.8 * ser_q[slot_series[in_ser]] + 0.6 * quality[in_ser]
    eps = rng.standard_normal(n)
    ser_eps = rng.standard_normal(n_series)
    eps[in_ser] = ser_eps[slot_series[in_ser]]
    log_pop = cfg.popularity_sigma * (0.5 * quality + np.sqrt(0.75) * eps)
    log_pop[in_ser] += np.log(0.85) * slot_episode[in_ser]  # later episodes are watched less
    pop = np.exp(log_pop)
    pop /= pop.mean()

    # release times: most of the catalogue predates the log, a share arrives during it
    def release_times(m: int) -> np.ndarray:
        old = T0 - cfg.catalogue_age_days * DAY * rng.random(m) ** 2
        new = T0 + (t_end - T0) * rng.random(m)
        return np.where(rng.random(m) < cfg.new_item_frac, new, old)

    ser_start = release_times(n_series)
    release = release_times(n)
    release[in_ser] = ser_start[slot_series[in_ser]] + (
        slot_episode[in_ser] * cfg.episode_interval_days * DAY
    )
    release[n_ser : n_ser + C] = T0 - cfg.catalogue_age_days * DAY
    release = np.minimum(release, t_end).astype(np.int64)

    base_min = np.array([_CATEGORY_MINUTES[c % len(_CATEGORY_MINUTES)] for c in range(C)])
    ser_dur = base_min[ser_cat] * np.exp(0.35 * rng.standard_normal(n_series))
    duration = base_min[slot_cat] * np.exp(0.35 * rng.standard_normal(n))
    duration[in_ser] = ser_dur[slot_series[in_ser]] * np.exp(0.1 * rng.standard_normal(n_ser))
    duration = np.maximum(0.5, np.round(duration, 1))

    # shuffle: item id of slot j is perm[j]
    perm = rng.permutation(n)

    def by_id(a: np.ndarray) -> np.ndarray:
        out = np.empty_like(a)
        out[perm] = a
        return out

    successor = np.full(n, -1, dtype=np.int64)
    has_next = np.zeros(n, dtype=bool)
    has_next[:n_ser] = slot_episode[:n_ser] < np.repeat(ser_len, ser_len)[:n_ser] - 1
    successor[perm[np.flatnonzero(has_next)]] = perm[np.flatnonzero(has_next) + 1]
    predecessor = np.full(n, -1, dtype=np.int64)
    predecessor[successor[successor >= 0]] = np.flatnonzero(successor >= 0)

    items: dict[str, Any] = {
        "category": by_id(slot_cat).astype(np.int64),
        "series": by_id(slot_series),
        "episode": by_id(slot_episode),
        "latent": by_id(lat).astype(np.float32),
        "quality": by_id(quality),
        "popularity": by_id(pop),
        "release": by_id(release),
        "duration": by_id(duration).astype(np.float32),
        "successor": successor,
        "predecessor": predecessor,
        "centroids": centroids.astype(np.float32),
        "cat_share": cat_share,
        "n_series": n_series,
    }
    # observable platform counters used as impression features (noisy views of the truth)
    items["log_pop_obs"] = np.log(items["popularity"]) + 0.25 * rng.standard_normal(n)
    items["quality_obs"] = items["quality"] + 0.6 * rng.standard_normal(n)
    items["neighbours"] = _neighbours(items["latent"], items["category"], cfg, rng)
    items.update(_item_text(cfg, items, rng))
    # sampling structure: items sorted by (category, release) with a popularity cumsum
    order = np.lexsort((items["release"], items["category"]))
    r0 = int(items["release"].min()) - 1
    items["sample_order"] = order
    items["sample_key"] = items["category"][order] * _KEY_SPAN + (items["release"][order] - r0)
    items["sample_r0"] = r0
    items["sample_cum"] = np.concatenate([[0.0], np.cumsum(items["popularity"][order])])
    items["sample_guide"] = _Guide(items["sample_cum"])
    items["cat_lo"] = np.searchsorted(items["category"][order], np.arange(C), side="left")
    mass = np.bincount(items["category"], weights=items["popularity"], minlength=C)
    items["cat_mass"] = mass / mass.sum()
    return items


def _neighbours(
    latent: np.ndarray, category: np.ndarray, cfg: WorldConfig, rng: np.random.Generator
) -> np.ndarray:
    """[n_items, n_neighbours] nearest items by cosine within the same category (-1: none)."""
    n, k = len(latent), cfg.n_neighbours
    out = np.full((n, k), -1, dtype=np.int64)
    if k == 0:
        return out
    vn = latent / np.maximum(np.linalg.norm(latent, axis=1, keepdims=True), 1e-9)
    for c in range(cfg.n_categories):
        idx = np.flatnonzero(category == c)
        if len(idx) < 2:
            continue
        pool = idx
        if len(idx) > cfg.neighbour_pool:
            pool = np.sort(rng.choice(idx, size=cfg.neighbour_pool, replace=False))
        kk = min(k, len(pool) - 1)
        vp = vn[pool].T
        for b in range(0, len(idx), 2048):
            rows = idx[b : b + 2048]
            s = vn[rows] @ vp
            s[rows[:, None] == pool[None, :]] = -np.inf
            top = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
            out[rows, :kk] = pool[top]
    return out


def _item_text(cfg: WorldConfig, items: dict[str, Any], rng: np.random.Generator) -> dict:
    """Titles (2-6 words) and synopses (text_len tokens) as strings, plus the vocabulary."""
    voc = _make_vocab(cfg, rng)
    n, d = cfg.n_items, cfg.n_latent_true
    cat, series, episode = items["category"], items["series"], items["episode"]
    lat = items["latent"]
    wpc, wpl = cfg.words_per_category, cfg.words_per_latent_group
    cat_cdf = _zipf_cdf(wpc, 1.0)
    gen_cdf = _zipf_cdf(cfg.n_general_words, 1.1)
    lat_cdf = _zipf_cdf(wpl, 0.7)
    # each series has 3 signature words from its category's mid-frequency vocabulary
    n_series = items["n_series"]
    ser_cat = np.zeros(n_series, dtype=np.int64)
    ser_cat[series[series >= 0]] = cat[series >= 0]
    sig_rank = rng.integers(min(20, wpc - 1), wpc, size=(n_series, 3))
    ser_sig = voc["cat_base"] + ser_cat[:, None] * wpc + sig_rank
    # each category's most similar other category (by centroid cosine) shares some words
    cen = items["centroids"] / np.linalg.norm(items["centroids"], axis=1, keepdims=True)
    csim = cen @ cen.T
    np.fill_diagonal(csim, -np.inf)
    related = np.argmax(csim, axis=1)
    # latent-word dimension weights: strong coordinates dominate
    w = np.abs(lat).astype(np.float64) ** 3
    dim_cdf = np.cumsum(w, axis=1)
    dim_cdf /= dim_cdf[:, -1:]

    def tokens(owner: np.ndarray, p: tuple[float, float, float, float], top: int) -> np.ndarray:
        """Token ids for token owners (item ids) with kind probabilities
        (category, general, latent, series); category words restricted to the ``top`` ranks."""
        m = len(owner)
        kind = np.searchsorted(np.cumsum(p), rng.random(m), side="right")
        kind = np.where((kind == 3) & (series[owner] < 0), 2, np.minimum(kind, 3))
        ids = np.empty(m, dtype=np.int64)
        sel = np.flatnonzero(kind == 0)
        rank = _zipf_draw(rng, _zipf_cdf(top, 1.0) if top < wpc else cat_cdf, len(sel))
        c = cat[owner[sel]]
        c = np.where(rng.random(len(sel)) < cfg.text_cross_category, related[c], c)
        ids[sel] = voc["cat_base"] + c * wpc + rank
        sel = kind == 1
        ids[sel] = voc["general_base"] + _zipf_draw(rng, gen_cdf, int(sel.sum()))
        sel = np.flatnonzero(kind == 2)
        o = owner[sel]
        dim = (rng.random(len(sel))[:, None] > dim_cdf[o]).sum(axis=1)
        dim = np.minimum(dim, d - 1)
        sign = (lat[o, dim] > 0).astype(np.int64)
        ids[sel] = voc["latent_base"] + (dim * 2 + sign) * wpl + _zipf_draw(rng, lat_cdf, len(sel))
        sel = kind == 3
        ids[sel] = ser_sig[series[owner[sel]], rng.integers(0, 3, int(sel.sum()))]
        return ids

    lo, hi = cfg.text_len
    text_len = np.clip(np.round(rng.normal(cfg.text_mean_len, 0.35 * (hi - lo), n)), lo, hi)
    text_len = text_len.astype(np.int64)
    owner = np.repeat(np.arange(n), text_len)
    text_ids = tokens(owner, cfg.text_mix, wpc)
    text = _join_tokens(voc["vocab"], text_ids, text_len)

    # titles: series -> two signature words + "part" + number; others -> 2-5 words
    title_len = rng.integers(2, 6, size=n)
    is_ep = series >= 0
    title_len[is_ep] = 4
    owner = np.repeat(np.arange(n), title_len)
    title_ids = tokens(owner, (0.5, 0.1, 0.4, 0.0), min(60, wpc))
    first = _segment_first(title_len)
    ep_first = first[is_ep]
    title_ids[ep_first] = ser_sig[series[is_ep], 0]
    title_ids[ep_first + 1] = ser_sig[series[is_ep], 1]
    title_ids[ep_first + 2] = voc["extra_base"]
    title_ids[ep_first + 3] = voc["extra_base"] + 1 + np.minimum(episode[is_ep], 19)
    title = _join_tokens(voc["vocab"], title_ids, title_len)
    return {"title": title, "text": text, "vocab_size": len(voc["vocab"])}


def platform_vectors(latent: np.ndarray, rng: np.random.Generator,
                     noise: float = 0.5) -> np.ndarray:
    """The platform's own item vectors, float32 [n_items, d]: the true latents seen through
    noise (per dimension ``noise`` x the latents' root mean square), as a content pipeline
    would give them. The click features' history similarity is computed from them; no model
    reads them."""
    scale = noise * float(np.sqrt(np.mean(np.square(latent))))
    return (latent + scale * rng.standard_normal(latent.shape)).astype(np.float32)
