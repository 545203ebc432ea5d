"""detectron2's infinite ``TrainingSampler`` that can start part-way through its stream."""

import itertools
from typing import Callable, Optional, Sequence, Tuple

from detectron2.data.samplers import TrainingSampler

__all__ = ["ResumableTrainingSampler", "consumed_state"]


class ResumableTrainingSampler(TrainingSampler):
    """
    :class:`detectron2.data.samplers.TrainingSampler` (the infinite seeded stream
    ``shuffle(range(size)) + shuffle(range(size)) + ...``, this rank's share ``[rank::world]``)
    whose iteration can start after ``skip`` indices of this rank's stream, preceded by a list
    of ``pending`` indices: the samples a batching stage had taken from the stream but not yet
    emitted as a batch when the run stopped (see :func:`consumed_state`).

    With ``skip = 0`` and no pending indices it yields exactly what ``TrainingSampler`` yields for
    the same seed, so runs that never resume keep detectron2's data order. The sampler is
    iterated inside the data-loader workers (``ToIterableDataset`` shards its output by worker),
    so :meth:`resume` must be called before the loader's iterator is created.
    """

    def __init__(self, size: int, shuffle: bool = True, seed: Optional[int] = None):
        """
        Args:
            size, shuffle, seed: as for ``TrainingSampler`` (seed None = a random seed shared by
                all ranks; the seed is saved in checkpoints by ``wps_sam.engine``'s
                ``TrainingStateHook`` so that a resumed run reuses it).
        """
        super().__init__(size, shuffle=shuffle, seed=seed)
        self._skip = 0
        self._pending: Tuple[int, ...] = ()

    @property
    def seed(self) -> int:
        """The seed of the shuffle (the same on every rank)."""
        return self._seed

    def set_seed(self, seed: int):
        """Use ``seed`` for the shuffle (the seed of the run being resumed)."""
        self._seed = int(seed)

    def resume(self, skip: int, pending: Sequence[int] = ()):
        """Start this rank's stream after its first ``skip`` indices, yielding ``pending`` first."""
        if skip < 0:
            raise ValueError(f"skip must be >= 0, got {skip}")
        self._skip = int(skip)
        self._pending = tuple(int(i) for i in pending)

    def rank_stream(self):
        """This rank's share of the infinite stream from its beginning (what ``__iter__`` yields
        when not resumed)."""
        return itertools.islice(self._infinite_indices(), self._rank, None, self._world_size)

    def __iter__(self):
        yield from self._pending
        yield from itertools.islice(self.rank_stream(), self._skip, None)


def consumed_state(
    stream,
    num_batches: int,
    batch_size: int,
    bucket_of: Optional[Callable[[int], int]] = None,
) -> Tuple[int, list]:
    """
    Replay the batching of a data loader on the index stream, without loading any data.

    Args:
        stream: an iterator of dataset indices, in the order the loader receives them.
        num_batches (int): batches the training loop consumed (the iteration to resume at).
        batch_size (int): images per batch on this rank.
        bucket_of: None for plain consecutive batches; otherwise the aspect-ratio bucket of an
            index, as detectron2's ``AspectRatioGroupedDataset`` assigns it (0: width > height,
            1: otherwise): a batch is emitted whenever a bucket holds ``batch_size`` indices.

    Returns:
        (skip, pending): how many indices of ``stream`` the loader took, and the indices it held
        in its buckets (bucket 0's then bucket 1's, each in arrival order), not yet emitted.
        Feeding ``pending`` and then the stream after ``skip`` to a fresh loader reproduces the
        batches that come after the first ``num_batches``.
    """
    if num_batches <= 0:
        return 0, []
    if bucket_of is None:
        return num_batches * batch_size, []
    buckets = [[], []]
    emitted = 0
    skip = 0
    for index in stream:
        skip += 1
        bucket = buckets[bucket_of(index)]
        bucket.append(index)
        if len(bucket) == batch_size:
            bucket.clear()
            emitted += 1
            if emitted == num_batches:
                break
    return skip, buckets[0] + buckets[1]
