"""Datasets: where the files are, how they are read, how they are split.

``sources`` finds, checks, caches and splits a dataset (``load``); ``idx`` reads the IDX file
format; ``download`` fetches a missing dataset with checksums, atomically. The public names live
here: ``bnlab.data.load``, ``bnlab.data.DatasetError``, ``bnlab.data.DATASETS``, ...
"""

from bnlab.data.sources import (DATASETS, DEBIAN_DIRS, KERAS_DATASETS_DIR, Dataset, DatasetError,
                                cache_dir, load, preprocess, read_idx)

__all__ = ["DATASETS", "DEBIAN_DIRS", "KERAS_DATASETS_DIR", "Dataset", "DatasetError",
           "cache_dir", "load", "preprocess", "read_idx"]
