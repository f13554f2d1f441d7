"""Item text to tokens: one tokeniser and one vocabulary for every text model.

* :func:`tokenize` lower-cases a string and keeps its runs of letters and digits
  (``"4-1/2-Inch Grit"`` -> ``["4", "1", "2", "inch", "grit"]``). It is deterministic and has no
  state, so the same text always gives the same tokens.
* :class:`Vocabulary` maps tokens to ids. Id 0 is the padding token ``<pad>``, id 1 the unknown
  token ``<unk>``; the other ids go to the tokens seen at least ``min_count`` times in the texts
  it was built from, most frequent first (ties alphabetically), optionally capped at
  ``max_size`` entries. It is saved with a run as JSON (:meth:`Vocabulary.to_json`), so the
  same item text maps to the same ids at training and at serving.
* :func:`item_texts` is the text of each item that the models read: its title and its
  description (the description alone when it already starts with the title).

Which texts a vocabulary is built from is the caller's decision; the content models build it
from the items that have interactions in the **training view** only (see
:func:`streamrec.models.content.training_items`), so a held-out item's words never reach the
vocabulary or the IDF statistics.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from streamrec.data.dataset import Dataset

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
DEFAULT_MAX_LEN = 64

_TOKEN = re.compile(r"[^\W_]+")


def tokenize(text: str) -> list[str]:
    """Lower-cased runs of letters and digits of ``text`` (Unicode-aware)."""
    return _TOKEN.findall(str(text).lower())


def item_texts(ds: Dataset) -> list[str]:
    """The text of every item, [n_items] strings: ``"title. description"``.

    Uses the ``title`` and ``text`` item columns when present; when the description already
    starts with the title (as in the MovieLens and Amazon importers) it is used alone.
    Items without either get ``""``.
    """
    n = ds.n_items
    titles = ds.items.get("title")
    texts = ds.items.get("text")
    out = []
    for i in range(n):
        title = str(titles[i]).strip() if titles is not None else ""
        body = str(texts[i]).strip() if texts is not None else ""
        if title and body and not body.lower().startswith(title.lower()):
            out.append(f"{title}. {body}")
        else:
            out.append(body or title)
    return out


class Vocabulary:
    """Token <-> id mapping with padding (id 0) and unknown (id 1) tokens.

    Build it with :meth:`build`; ``encode`` / ``encode_batch`` turn texts into ids.
    """

    def __init__(self, tokens: Sequence[str], min_count: int = 1, counts: str = "tokens") -> None:
        tokens = list(tokens)
        if tokens[:2] != [PAD, UNK]:
            tokens = [PAD, UNK, *(t for t in tokens if t not in (PAD, UNK))]
        if len(set(tokens)) != len(tokens):
            raise ValueError("Vocabulary: duplicate tokens")
        self.itos: list[str] = tokens
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(tokens)}
        self.min_count = int(min_count)
        self.counts = counts

    # ------------------------------------------------------------------ building
    @classmethod
    def build(
        cls,
        texts: Iterable[str],
        min_count: int = 2,
        max_size: int | None = None,
        counts: str = "tokens",
    ) -> Vocabulary:
        """A vocabulary of the tokens of ``texts`` seen at least ``min_count`` times.

        counts: ``"tokens"`` counts every occurrence; ``"documents"`` counts the texts a token
        occurs in (document frequency, as TF-IDF's ``min_df``).
        max_size: keep at most this many entries in all (``<pad>`` and ``<unk>`` included),
        the most frequent ones.
        Order: count descending, then the token alphabetically (deterministic).
        """
        if min_count < 1:
            raise ValueError("Vocabulary.build: min_count must be >= 1")
        if counts not in ("tokens", "documents"):
            raise ValueError(
                f"Vocabulary.build: counts must be tokens or documents, not {counts!r}"
            )
        counter: Counter[str] = Counter()
        for text in texts:
            toks = tokenize(text)
            counter.update(set(toks) if counts == "documents" else toks)
        for special in (PAD, UNK):
            counter.pop(special, None)
        kept = sorted(
            (t for t, c in counter.items() if c >= min_count), key=lambda t: (-counter[t], t)
        )
        if max_size is not None:
            if max_size < 2:
                raise ValueError("Vocabulary.build: max_size must be >= 2 (<pad> and <unk>)")
            kept = kept[: max_size - 2]
        return cls([PAD, UNK, *kept], min_count=min_count, counts=counts)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.itos == other.itos

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens, min_count={self.min_count}, counts={self.counts})"

    # ------------------------------------------------------------------ encoding
    def ids(self, tokens: Iterable[str]) -> list[int]:
        """Ids of tokens (``UNK_ID`` for unknown ones), no truncation or padding."""
        return [self.stoi.get(t, UNK_ID) for t in tokens]

    def encode(
        self, text: str, max_len: int | None = DEFAULT_MAX_LEN, pad: bool = True
    ) -> list[int]:
        """Ids of ``text``'s tokens, truncated to ``max_len`` and (if ``pad``) right-padded
        with ``PAD_ID`` to exactly ``max_len``. ``max_len=None``: no limit, no padding."""
        ids = self.ids(tokenize(text))
        if max_len is None:
            return ids
        ids = ids[:max_len]
        if pad:
            ids += [PAD_ID] * (max_len - len(ids))
        return ids

    def encode_batch(self, texts: Sequence[str], max_len: int = DEFAULT_MAX_LEN) -> np.ndarray:
        """int64 array [len(texts), max_len] of padded ids (row ``i`` = ``encode(texts[i])``)."""
        if max_len < 1:
            raise ValueError("encode_batch: max_len must be >= 1")
        out = np.full((len(texts), max_len), PAD_ID, dtype=np.int64)
        for r, text in enumerate(texts):
            ids = self.encode(text, max_len, pad=False)
            out[r, : len(ids)] = ids
        return out

    def decode(self, ids: Iterable[int], skip_pad: bool = True) -> list[str]:
        """Tokens of ids (padding dropped unless ``skip_pad=False``)."""
        return [self.itos[i] for i in ids if not (skip_pad and i == PAD_ID)]

    # ------------------------------------------------------------------ io
    def to_json(self) -> str:
        """JSON text of the vocabulary (what a run saves in ``extra/vocab.json``)."""
        return json.dumps(
            {
                "format": "streamrec-vocab/1",
                "min_count": self.min_count,
                "counts": self.counts,
                "tokens": self.itos,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Vocabulary:
        """The vocabulary of :meth:`to_json` output."""
        obj = json.loads(text)
        if obj.get("format") != "streamrec-vocab/1":
            raise ValueError(f"not a StreamRec vocabulary (format {obj.get('format')!r})")
        return cls(obj["tokens"], min_count=obj["min_count"], counts=obj.get("counts", "tokens"))
