"""Data: TFDS builders for shipped data, host input pipeline, on-device augmentation.

Host side: random-access sources (:mod:`ssljax.data.sources`: TFDS array_record, image folders,
npz files; tables in :mod:`ssljax.data.tables`; time series in
:mod:`ssljax.data.series`) -> per-process shard -> shuffled uint8 batches from a
checkpointable grain iterator (:mod:`ssljax.data.pipeline`); user input is checked by
:mod:`ssljax.data.checks`.
Device side (:mod:`ssljax.data.augment`): per-image augmentation functions vmapped over a batch
inside the jitted train step.
"""

from ssljax.data.augment import ViewRecipe, augment_batch, augment_image, preprocess_eval
from ssljax.data.pipeline import iterate_eval, make_train_iterator, steps_per_epoch
from ssljax.data.sources import DatasetInfo, get_info

__all__ = [
    "DatasetInfo",
    "ViewRecipe",
    "augment_batch",
    "augment_image",
    "get_info",
    "iterate_eval",
    "make_train_iterator",
    "preprocess_eval",
    "steps_per_epoch",
]
