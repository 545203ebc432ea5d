"""The pre-training stream of tiny SAM v2: part objects and generic shapes, never a class name.

SAM was pre-trained on SA-1B, whose masks cover whole objects *and* their parts and sub-parts, on
images of the same world as the part datasets, without a single class label. This stream does the
same at the scale of the synthetic benchmark. Each image is either

* a **part-object image**: 1-3 procedural objects of every kind (houses, fish, cars, trees,
  snowmen, robots) drawn by the benchmark's own renderer
  (:func:`wps_sam.synthetic.parts.render_synthetic_image`) from a generator seeded by the split name
  :data:`PRETRAINING_SPLIT`, which no benchmark split uses, then JPEG-compressed like the
  benchmark's files. Its targets are every visible **part** instance, every **whole object** (the
  union of its visible parts) and every **group** of same-class parts of one object (a car's
  wheels, a robot's legs); or
* a **generic-shape image** from :mod:`wps_sam.tiny_sam.generic_shapes` (tiny SAM v1's data).

Targets carry no class: a sample holds masks, boxes and a granularity code per target (for
analysis and per-granularity evaluation only; the training loss never sees it). Point prompts may
fall on parts and whole objects (an ambiguous point: SAM's best-of-three multimask output is
supervised); the single-mask output of a point prompt is supervised only for parts, which are what
WPS-SAM's point mode decodes. Groups are box-prompted only (a point on one wheel does not mean both
wheels).

A sample is a pure function of ``(seed, index, cfg)``; held-out images use another seed.
"""

import zlib
from dataclasses import dataclass
from typing import Dict

import cv2
import numpy as np

from ..synthetic.parts import render_synthetic_image
from .generic_shapes import GenericShapesConfig, generate_generic_sample

__all__ = [
    "GRANULARITIES",
    "PRETRAINING_SPLIT",
    "PretrainingStreamConfig",
    "generate_pretraining_sample",
    "part_object_sample",
]

# The split name that seeds the part-object images; the benchmark's splits are train/val/test
# (and subsets of train), whose generators are seeded by crc32 of their own names.
PRETRAINING_SPLIT = "tiny_sam_pretraining"
# Granularity code of each target (index into this tuple).
GRANULARITIES = ("part", "group", "object", "shape", "composite")
PART, GROUP, OBJECT, SHAPE, COMPOSITE = range(len(GRANULARITIES))


@dataclass
class PretrainingStreamConfig:
    """The mixture and the targets of the pre-training stream.

    Attributes:
        image_size: SAM's input size (images are square at this size).
        part_image_prob: probability that an image is a part-object image (else generic shapes).
        min_part_area: visible pixels a part needs to be a target.
        group_targets: whether groups of same-class parts of one object are targets.
        jpeg_quality: JPEG round trip of part-object images, as the benchmark stores its images
            (0: none).
        generic: the generic-shape generator's configuration.
    """

    image_size: int = 256
    part_image_prob: float = 0.7
    min_part_area: int = 12
    group_targets: bool = True
    jpeg_quality: int = 95
    generic: GenericShapesConfig = None

    def __post_init__(self):
        if self.generic is None:
            self.generic = GenericShapesConfig(image_size=self.image_size)
        if self.generic.image_size != self.image_size:
            raise ValueError(
                f"Generic shapes at {self.generic.image_size} px but the stream is "
                f"{self.image_size} px; give both the same size."
            )
        if not 0.0 <= self.part_image_prob <= 1.0:
            raise ValueError(f"part_image_prob must be in [0, 1], got {self.part_image_prob}")


def _box(mask: np.ndarray) -> np.ndarray:
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    return np.array([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1], np.float32)


def part_object_sample(seed: int, index: int, cfg: PretrainingStreamConfig) -> Dict[str, object]:
    """Image ``index`` of the part-object stream of ``seed``, with class-agnostic targets at every
    granularity (see the module docstring). Returns the keys of
    :func:`generate_pretraining_sample`; ``None`` when no target is visible."""
    rng = np.random.default_rng([int(seed), zlib.crc32(PRETRAINING_SPLIT.encode("utf-8")), index])
    out = render_synthetic_image(rng, cfg.image_size)
    image, instance_map = out["image"], out["instance_map"]
    if cfg.jpeg_quality:
        ok, buf = cv2.imencode(
            ".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality]
        )
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]
    classes, objects = out["instance_classes"], out["instance_objects"]
    masks, granularity = [], []
    by_object: Dict[int, list] = {}
    for k, (cls, obj) in enumerate(zip(classes, objects)):
        visible = instance_map == k
        if int(visible.sum()) < cfg.min_part_area:
            continue
        masks.append(visible)
        granularity.append(PART)
        by_object.setdefault(obj, []).append((cls, visible))
    for obj, parts in by_object.items():
        if cfg.group_targets:
            for cls in dict.fromkeys(c for c, _ in parts):
                same = [m for c, m in parts if c == cls]
                if len(same) > 1:
                    masks.append(np.logical_or.reduce(same))
                    granularity.append(GROUP)
        if len(parts) > 1:
            masks.append(np.logical_or.reduce([m for _, m in parts]))
            granularity.append(OBJECT)
    if not masks:
        return None
    granularity = np.array(granularity, np.int64)
    return {
        "image": np.ascontiguousarray(image),
        "masks": np.stack(masks),
        "boxes": np.stack([_box(m) for m in masks]),
        "is_union": granularity != PART,
        "point_ok": granularity != GROUP,
        "granularity": granularity,
    }


def generate_pretraining_sample(
    seed: int, index: int, cfg: PretrainingStreamConfig = PretrainingStreamConfig()
) -> Dict[str, object]:
    """Image ``index`` of the pre-training stream of ``seed``.

    Returns a dict with
        "image": uint8 ``H x W x 3`` RGB,
        "masks": bool ``K x H x W`` visible target regions, "boxes": float32 ``K x 4`` XYXY,
        "is_union": bool ``K``, True for targets made of several regions (groups, objects,
            composites): their point prompts do not supervise the single-mask output,
        "point_ok": bool ``K``, whether a point prompt may target it,
        "granularity": int ``K``, index into :data:`GRANULARITIES`.
    """
    choice = np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 5]))
    if choice.random() < cfg.part_image_prob:
        sample = part_object_sample(seed, index, cfg)
        if sample is not None:
            return sample
    s = generate_generic_sample(seed, index, cfg.generic)
    s["point_ok"] = ~s["is_union"]
    s["granularity"] = np.where(s["is_union"], COMPOSITE, SHAPE).astype(np.int64)
    return s
