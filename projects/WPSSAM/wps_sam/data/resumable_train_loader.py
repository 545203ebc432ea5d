"""detectron2's training data loader, made to continue its data order when training resumes."""

import logging

import torch
from detectron2.data import build_detection_train_loader, get_detection_dataset_dicts
from detectron2.data.common import AspectRatioGroupedDataset
from detectron2.utils import comm

from .resumable_sampler import ResumableTrainingSampler, consumed_state

__all__ = ["ResumableTrainLoader", "build_resumable_train_loader"]

logger = logging.getLogger(__name__)


class ResumableTrainLoader:
    """
    The loader of :func:`detectron2.data.build_detection_train_loader` (batches are lists of
    mapped dicts), driven by a :class:`ResumableTrainingSampler`, with two changes that make a
    resumed run see the batches an uninterrupted run would have seen:

    * ``iter()`` is lazy: the torch ``DataLoader`` iterator (and its worker processes, which copy
      the sampler) is created at the first ``next()``, i.e. in the first training step, after
      :meth:`resume` has positioned the sampler.
    * the ``DataLoader`` draws its worker base seed from its own ``torch.Generator`` (seeded once,
      at construction, from the global RNG), so creating the iterator later does not shift the
      global torch RNG that the model's dropout uses.
    """

    def __init__(self, loader, sampler, dataset_dicts, batch_size, aspect_ratio_grouping, workers):
        """
        Args:
            loader: what ``build_detection_train_loader`` returned for ``sampler``.
            sampler (ResumableTrainingSampler): the loader's sampler.
            dataset_dicts (list[dict]): the training set (for the aspect-ratio buckets).
            batch_size (int): images per batch on this rank.
            aspect_ratio_grouping (bool): cfg.DATALOADER.ASPECT_RATIO_GROUPING.
            workers (int): cfg.DATALOADER.NUM_WORKERS.
        """
        self.loader = loader
        self.sampler = sampler
        self.dataset_dicts = dataset_dicts
        self.batch_size = batch_size
        self.aspect_ratio_grouping = aspect_ratio_grouping
        self.num_workers = workers
        torch_loader = loader.dataset if isinstance(loader, AspectRatioGroupedDataset) else loader
        seed = int(torch.empty((), dtype=torch.int64).random_().item())
        torch_loader.generator = torch.Generator().manual_seed(seed)

    def _bucket_of(self):
        """detectron2's aspect-ratio bucket of each index, or None when batches are consecutive."""
        if not self.aspect_ratio_grouping:
            return None
        dicts = self.dataset_dicts
        if not all("width" in d and "height" in d for d in dicts):
            logger.warning(
                "Resume: some training dataset dicts lack 'width'/'height', so the aspect-ratio "
                "grouping cannot be replayed; the data order after resuming is approximate."
            )
            return None
        return lambda i: 0 if dicts[i]["width"] > dicts[i]["height"] else 1

    def resume(self, start_iter: int) -> dict:
        """
        Position the sampler so that the next batch is batch ``start_iter`` of the run.

        Returns:
            dict with "skip" (indices of this rank's stream already taken), "pending" (indices
            taken but not yet batched), "epoch" and "position" (where ``skip`` falls in the
            shuffled epochs of the training set).
        """
        bucket_of = self._bucket_of()
        if bucket_of is None and self.num_workers > 1 and start_iter % self.num_workers:
            # Without grouping, worker w batches every num_workers-th index of the stream and
            # the DataLoader takes batches from the workers in turn: an offset is exact only at
            # a multiple of num_workers batches.
            logger.warning(
                f"Resume: with DATALOADER.ASPECT_RATIO_GROUPING off and {self.num_workers} "
                f"workers, the data order is exact only when resuming at a multiple of "
                f"{self.num_workers} iterations (this is {start_iter}); the batches after "
                "resuming hold the right images in a slightly different order."
            )
        self.sampler.resume(0)
        skip, pending = consumed_state(
            self.sampler.rank_stream(), start_iter, self.batch_size, bucket_of
        )
        self.sampler.resume(skip, pending)
        size = len(self.dataset_dicts)
        per_epoch = max(size // max(comm.get_world_size(), 1), 1)
        return {
            "skip": skip,
            "pending": len(pending),
            "epoch": skip // per_epoch,
            "position": skip % per_epoch,
        }

    def __iter__(self):
        yield from self.loader


def build_resumable_train_loader(cfg, mapper):
    """
    ``build_detection_train_loader(cfg, mapper=mapper)`` with a :class:`ResumableTrainingSampler`
    (same seed and data order as detectron2's ``TrainingSampler``), wrapped in a
    :class:`ResumableTrainLoader`.

    Only ``DATALOADER.SAMPLER_TRAIN = "TrainingSampler"`` (detectron2's default and every
    WPS-SAM recipe's) can resume its data order; other samplers get detectron2's loader
    unchanged and restart their stream on resume (with a warning from ``TrainingStateHook``).
    """
    if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
        return build_detection_train_loader(cfg, mapper=mapper)
    dataset = get_detection_dataset_dicts(
        cfg.DATASETS.TRAIN,
        filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
        min_keypoints=0,
        proposal_files=None,
    )
    sampler = ResumableTrainingSampler(len(dataset))
    loader = build_detection_train_loader(cfg, mapper=mapper, dataset=dataset, sampler=sampler)
    return ResumableTrainLoader(
        loader,
        sampler,
        dataset,
        cfg.SOLVER.IMS_PER_BATCH // comm.get_world_size(),
        cfg.DATALOADER.ASPECT_RATIO_GROUPING,
        cfg.DATALOADER.NUM_WORKERS,
    )
