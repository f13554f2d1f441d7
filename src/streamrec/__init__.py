"""StreamRec: a deep-learning recommender system for a streaming-content platform.

The package is organised as one way through the house::

    data  ->  models  ->  train  ->  evaluate  ->  serve

Heavy dependencies (torch models, FAISS, PyG, sentence-transformers) are imported where they
are used, so ``import streamrec`` and ``streamrec --help`` stay fast.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
