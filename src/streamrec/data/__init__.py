"""Data: the synthetic StreamRec world, importers, the dataset type and splits.

Nothing here imports torch models.
"""

from streamrec.data.dataset import Dataset, DatasetError, load_dataset
from streamrec.data.splits import Split, make_split

__all__ = ["Dataset", "DatasetError", "Split", "load_dataset", "make_split"]
