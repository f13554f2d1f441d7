"""Serving: what turns trained runs into recommendations for a user or a session.

* :mod:`streamrec.serve.recommend` — top-k items for a user (:func:`recommend_user`) or for an
  ad-hoc session of recent items (:func:`recommend_session`), original ids in and out;
* :mod:`streamrec.serve.index` — the ANN index over item vectors (FAISS) and retrieval;
* :mod:`streamrec.serve.embeddings` — item embeddings: export, nearest neighbours;
* :mod:`streamrec.serve.explain` — attention explanations of the session transformer.

A model does not know how it is served: this layer reaches models only through the contract of
:mod:`streamrec.models.base` (scores, and the capabilities a model declares).
"""

from streamrec.serve.recommend import recommend_session, recommend_user

__all__ = ["recommend_session", "recommend_user"]
