"""A disk cache of SAM image embeddings, so that the frozen encoder runs once per image.

The prompter is the only trainable part of WPS-SAM, and the image encoder is by far its most
expensive frozen part (ViT-B: ~15 s per 1024² image on one CPU core). Training many epochs
therefore pays the encoder cost once: :func:`build_embedding_cache` encodes every image and
``WPSSAMDatasetMapper`` reads the embeddings back through ``INPUT.EMBEDDING_CACHE_DIR``.

Format (version 2, see docs/PERFORMANCE.md):

* ``cache_info.json``: the format version, the encoder fingerprint (SAM architecture keys and the
  sha256 of its checkpoint) and the preprocessing (image size, pixel mean/std, input format).
  Building into a folder made by another SAM is refused (or, with ``rebuild_stale``, the folder
  is emptied with a warning).
* ``shard-<rank>-<time>-<n>.npy``: ``N x D x E x E`` float16 embeddings (NumPy ``.npy``), read
  with ``np.load(mmap_mode="r")``: a training process maps the shards instead of loading them.
* ``shard-<...>.json``: the shard's index: its shape, byte size, encoder and preprocessing keys,
  and one entry per row: dataset name, image stem, file name, image size in bytes, and the time
  it was encoded. A shard is valid only once its index exists; both files are written to
  ``*.tmp`` and renamed (``os.replace``), data first, so a killed build never leaves a
  half-written shard that looks valid. A rerun keeps the valid shards and encodes the rest.

An entry is used only when its keys match the reading config and its image is unchanged (same
byte size, not modified after it was encoded); otherwise the mapper warns with the file name and
the encoder recomputes it. A shard whose file is shorter than its index says (a truncated copy)
raises an error naming it; :func:`build_embedding_cache` deletes such shards and re-encodes their
images. Embeddings are stored in float16 (2 MiB per ViT-B image instead of 4 MiB); the relative
rounding error is below 1e-3, see tests/test_embedding_cache.py for its effect on the losses.

The old format (one float32 ``<stem>.pt`` per image) is still read when no shard holds an image;
a build replaces it.

This module is the cache's public face; the code is in three modules whose dependencies go one
way (``tests/test_import_graph.py`` checks that the package has no import cycle):

* :mod:`~wps_sam.data.embedding_cache_format`: the key scheme and file layout (no project import);
* :mod:`~wps_sam.data.embedding_cache_reader`: :class:`EmbeddingCache` (format);
* the dataset mappers read through the reader (format, reader);
* :mod:`~wps_sam.data.embedding_cache_writer`: :func:`build_embedding_cache` (format, reader, the
  WPS-SAM mapper to read images, and a model to encode them).
"""

from .embedding_cache_format import (  # noqa: F401
    CACHE_FORMAT,
    INFO_FILE,
    cache_info,
    cache_keys,
    check_shard,
    preprocessing,
    sam_fingerprint,
)
from .embedding_cache_reader import EmbeddingCache  # noqa: F401
from .embedding_cache_writer import build_embedding_cache  # noqa: F401

__all__ = [
    "CACHE_FORMAT",
    "EmbeddingCache",
    "build_embedding_cache",
    "cache_keys",
    "sam_fingerprint",
]
