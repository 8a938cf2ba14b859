"""Data: TFDS builders for shipped data, host input pipeline, on-device augmentation.

Host side (:mod:`ssljax.data.pipeline`): random-access sources (TFDS array_record, image folders,
npz files) -> per-process shard -> shuffled uint8 batches from a checkpointable grain iterator.
Device side (:mod:`ssljax.data.augment`): per-image augmentation functions vmapped over a batch
inside the jitted train step.
"""

from ssljax.data.augment import ViewRecipe, augment_batch, augment_image, preprocess_eval
from ssljax.data.pipeline import (
    DatasetInfo,
    get_info,
    iterate_eval,
    make_train_iterator,
    steps_per_epoch,
)

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
