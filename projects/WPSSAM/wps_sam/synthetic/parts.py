"""Synthetic part-segmentation dataset written in the PartImageNet segmentation-release format.

Each image shows 1-3 procedurally drawn objects (:mod:`wps_sam.synthetic.part_objects`: houses,
fish, cars, trees, snowmen, robots; 20 part classes). Like PartImageNet's, images are
object-centric: 75% hold one large object (0.75-1.0 of the image side), the others 2-3 smaller
ones (0.45-0.65), with random scale, rotation (±30°), mirror,
position, colours and textures per instance and per part, on a cluttered background (textures,
lines, distractor blobs that are *not* parts). Objects drawn later occlude earlier ones, and a few
small distractors may occlude objects; the label map records exactly what is visible.

Layout of a split (identical to PartImageNet_Seg, so the same registration, mapper and evaluator
code reads it)::

    <root>/images/<split>/<split>_<index:06d>.JPEG        RGB, JPEG quality 95
    <root>/annotations/<split>/<split>.json              COCO: images, annotations, categories
    <root>/annotations/<split>/<split>_<index:06d>.png   uint8 label map: parts 0..C-1, background C

JSON conventions: ``images`` have id/file_name/height/width (ids from 1); ``annotations`` have id
(from 1), image_id, ``category_id`` in 0..C-1, ``segmentation`` (polygons of the **visible** part,
several when occlusion splits it), ``bbox`` (XYWH of the visible pixels), ``area`` (visible pixel
count), ``iscrowd`` 0; ``categories`` have id/name/supercategory (the object kind). There is one
annotation per part *instance* (each wheel, fin, arm, leg on its own), none for a part that is fully
occluded or outside the image.

Everything is a pure function of (seed, split, index, image_size): image ``i`` of a split draws from
``numpy.random.default_rng([seed, crc32(split), i])``, so the splits have separate seeds derived
from the base seed, any subset of images can be regenerated alone, and the result does not depend
on the number of worker processes. Same arguments give byte-identical JSON, JPEG and PNG files.
"""

import json
import logging
import multiprocessing as mp
import os
import time
import zlib

import cv2
import numpy as np
from tqdm import tqdm

from .part_objects import OBJECT_KINDS, PART_CLASS_NAMES, PART_CLASSES, build_object
from .part_textures import (
    contrasting_color,
    draw_background,
    paint,
    part_palette,
    random_distractor_mask,
    random_texture,
)

__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "DEFAULT_SEED",
    "DEFAULT_SPLIT_SIZES",
    "GENERATOR_VERSION",
    "OBJECT_KINDS",
    "SYNTHETIC_PART_CLASSES",
    "SYNTHETIC_PART_SUPERCATEGORIES",
    "generate_synthetic_parts",
    "render_synthetic_image",
    "image_annotations",
    "synthetic_split_paths",
]

logger = logging.getLogger(__name__)

# Part class names in id order (0..C-1); background is C = len(SYNTHETIC_PART_CLASSES) = 20.
SYNTHETIC_PART_CLASSES = list(PART_CLASS_NAMES)
SYNTHETIC_PART_SUPERCATEGORIES = [kind for kind, _ in PART_CLASSES]
BACKGROUND_ID = len(SYNTHETIC_PART_CLASSES)

DEFAULT_SPLIT_SIZES = {"train": 2000, "val": 300, "test": 300}
DEFAULT_IMAGE_SIZE = 256
DEFAULT_SEED = 0
JPEG_QUALITY = 95
# Bump when the drawing changes, so cached datasets can be told apart (stored in the JSON "info").
GENERATOR_VERSION = 2  # 2: object-centric images (one large object in most), as PartImageNet

# P(1, 2, 3 objects in an image). Version 1 had (0.5, 0.3, 0.2) and smaller objects; its parts
# were too small for the tiny SAM's 16x16 embedding grid (docs/BENCHMARK.md).
_NUM_OBJECTS_P = (0.75, 0.2, 0.05)
_MAX_ROTATION = np.deg2rad(30.0)


def synthetic_split_paths(root, split):
    """Paths of one split under ``root``: dict with image_root, json_file, sem_seg_root."""
    ann_dir = os.path.join(root, "annotations", split)
    return {
        "image_root": os.path.join(root, "images", split),
        "json_file": os.path.join(ann_dir, f"{split}.json"),
        "sem_seg_root": ann_dir,
    }


def _image_rng(seed, split, index):
    return np.random.default_rng([int(seed), zlib.crc32(split.encode("utf-8")), int(index)])


def _raster(polygons, placement, height, width, window=None):
    """Rasterize object-frame polygons placed in the image by ``placement``.

    Args:
        placement: (scale px, center xy, rotation rad, flip +-1).
        window: (y0, y1, x0, x1) to rasterize into; default = the polygons' bounding box clipped to
            the image.

    Returns:
        ``(y0, x0, mask)`` with mask uint8 (1 inside) covering the window, or None when the window
        is empty (the polygons lie outside the image).
    """
    scale, center, rotation, flip = placement
    c, s = np.cos(rotation), np.sin(rotation)
    rot = np.array([[c, -s], [s, c]])
    pts = [(p * np.array([flip, 1.0])) @ rot.T * scale + center for p in polygons]
    if window is None:
        allp = np.concatenate(pts, axis=0)
        x0, y0 = np.floor(allp.min(axis=0)).astype(int)
        x1, y1 = np.ceil(allp.max(axis=0)).astype(int) + 1
        y0, y1, x0, x1 = max(y0, 0), min(y1, height), max(x0, 0), min(x1, width)
    else:
        y0, y1, x0, x1 = window
    if y1 <= y0 or x1 <= x0:
        return None
    offset = np.array([x0, y0], dtype=np.float64)
    mask = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    for q in pts:
        # One call per polygon: a single fillPoly call would leave overlaps of its polygons empty
        # (even-odd filling), and a part is the union of its polygons. shift=4: sub-pixel outlines.
        cv2.fillPoly(mask, [np.round((q - offset) * 16.0).astype(np.int32)], 1, cv2.LINE_8, 4)
    return int(y0), int(x0), mask


def _object_placements(rng, height, width):
    """(kind, scale px, center xy, rotation rad, flip) for each object of one image."""
    size = float(min(height, width))
    n = int(rng.choice(len(_NUM_OBJECTS_P), p=_NUM_OBJECTS_P)) + 1
    placements = []
    for i in range(n):
        kind = OBJECT_KINDS[int(rng.integers(0, len(OBJECT_KINDS)))]
        scale = size * (rng.uniform(0.75, 1.0) if n == 1 else rng.uniform(0.45, 0.65))
        margin = np.minimum(0.35 * scale, np.array([width, height]) / 2.0)
        lo, hi = margin, np.array([width, height]) - margin
        if i > 0 and rng.random() < 0.5:  # next to an earlier object: overlap and occlusion
            _, prev_scale, prev_center, _, _ = placements[int(rng.integers(0, i))]
            ang = rng.uniform(0, 2 * np.pi)
            dist = rng.uniform(0.3, 0.7) * (prev_scale + scale) / 2.0
            center = np.clip(prev_center + dist * np.array([np.cos(ang), np.sin(ang)]), lo, hi)
        else:
            center = rng.uniform(lo, hi)
        rotation = rng.uniform(-_MAX_ROTATION, _MAX_ROTATION)
        flip = -1.0 if rng.random() < 0.5 else 1.0
        placements.append((kind, scale, center, rotation, flip))
    return placements


def render_synthetic_image(rng, image_size=DEFAULT_IMAGE_SIZE):
    """Draw one synthetic image with its exact part labels.

    Args:
        rng (numpy.random.Generator): the only source of randomness.
        image_size (int or (int, int)): side of a square image, or (height, width).

    Returns:
        dict with
            "image": uint8 H x W x 3 RGB,
            "label": uint8 H x W part label map (0..C-1 parts, C background),
            "instance_map": int32 H x W, index into "instance_classes" of the part instance that is
                visible at each pixel, -1 where none is,
            "instance_classes": list[int], the part class of each drawn part instance (a fully
                occluded instance stays in this list but has no pixel in "instance_map"),
            "instance_objects": list[int], the index of the object each part instance belongs to
                (objects in drawing order), so that whole objects are unions of their parts.
    """
    height, width = (image_size, image_size) if np.isscalar(image_size) else image_size
    height, width = int(height), int(width)
    image = draw_background(rng, height, width)
    label = np.full((height, width), BACKGROUND_ID, dtype=np.uint8)
    instance_map = np.full((height, width), -1, dtype=np.int32)
    instance_classes, instance_objects = [], []

    placements = _object_placements(rng, height, width)
    for object_index, (kind, scale, center, rotation, flip) in enumerate(placements):
        pieces = build_object(rng, kind)
        # Pieces of one class in one object (two wheels) share a base colour; textures differ.
        classes = list(dict.fromkeys(p.class_id for p in pieces))
        palette = dict(zip(classes, part_palette(rng, len(classes))))
        placement = (scale, center, rotation, flip)
        rasters = {}  # id(piece) -> (y0, x0, mask) of its full outline, for clip_to
        for piece in pieces:
            base = palette[piece.class_id]
            tex = random_texture(rng, base)
            k = len(instance_classes)
            instance_classes.append(piece.class_id)
            instance_objects.append(object_index)
            if piece.clip_to is None:
                raster = _raster(piece.polygons, placement, height, width)
            else:
                raster = rasters.get(id(piece.clip_to))
                if raster is not None:  # draw inside the parent's window, then clip to it
                    py0, px0, pmask = raster
                    window = (py0, py0 + pmask.shape[0], px0, px0 + pmask.shape[1])
                    child = _raster(piece.polygons, placement, height, width, window)[2]
                    raster = (py0, px0, child & pmask)
            rasters[id(piece)] = raster
            painted = None if raster is None else paint(image, raster[2], tex, raster[:2])
            if painted is None:  # entirely outside the image
                continue
            y0, y1, x0, x1, on = painted
            label[y0:y1, x0:x1][on] = piece.class_id
            instance_map[y0:y1, x0:x1][on] = k
            if piece.details:
                detail = _raster(piece.details, placement, height, width, (y0, y1, x0, x1))[2]
                detail &= on
                dtex = random_texture(rng, contrasting_color(rng, [base]))
                paint(image, detail, dtex, (y0, x0))

    if rng.random() < 0.2:  # small distractors in front of the objects: background again
        for _ in range(int(rng.integers(1, 3))):
            mask = random_distractor_mask(rng, height, width, min_frac=0.03, max_frac=0.1)
            painted = paint(image, mask, random_texture(rng, rng.uniform(0, 255, 3), True))
            if painted is not None:
                y0, y1, x0, x1, on = painted
                label[y0:y1, x0:x1][on] = BACKGROUND_ID
                instance_map[y0:y1, x0:x1][on] = -1

    if rng.random() < 0.4:
        image = cv2.GaussianBlur(image, (3, 3), 0.7)
    if rng.random() < 0.5:
        noise = rng.standard_normal(image.shape, dtype=np.float32)
        noise *= np.float32(rng.uniform(1.0, 6.0))
        noise += image
        image = np.clip(noise, 0, 255, out=noise).astype(np.uint8)
    return {
        "image": image,
        "label": label,
        "instance_map": instance_map,
        "instance_classes": instance_classes,
        "instance_objects": instance_objects,
    }


def _mask_polygons(mask):
    """COCO polygons ([x0, y0, x1, y1, ...] floats) of the outer contours of a binary mask.

    Contours of fewer than 3 points (1-2 pixel fragments) are replaced by the rectangle around their
    pixels, so every polygon has at least 6 numbers. Returns (polygons, number replaced).
    """
    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    polygons, replaced = [], 0
    for contour in contours:
        pts = contour.reshape(-1, 2).astype(np.float64)
        if len(pts) < 3:
            (x0, y0), (x1, y1) = pts.min(axis=0) - 0.5, pts.max(axis=0) + 0.5
            pts = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
            replaced += 1
        polygons.append([float(v) for v in pts.reshape(-1)])
    return polygons, replaced


def image_annotations(instance_map, instance_classes):
    """COCO annotations (without ids) of the visible part instances of one rendered image.

    Args:
        instance_map: int32 H x W from :func:`render_synthetic_image` (-1 = no part).
        instance_classes: list[int], class of each instance index.

    Returns:
        (annotations, stats): annotations is a list of dicts with category_id, segmentation, bbox
        (XYWH of the visible pixels), area (visible pixel count), iscrowd=0, in instance order;
        stats counts "occluded_instances" (drawn but not visible) and "replaced_polygons".
    """
    counts = np.bincount(instance_map.ravel() + 1, minlength=len(instance_classes) + 1)[1:]
    annotations, stats = [], {"occluded_instances": 0, "replaced_polygons": 0}
    for k, class_id in enumerate(instance_classes):
        if counts[k] == 0:
            stats["occluded_instances"] += 1
            continue
        visible = instance_map == k
        ys = np.flatnonzero(visible.any(axis=1))
        xs = np.flatnonzero(visible.any(axis=0))
        x0, y0 = int(xs[0]), int(ys[0])
        w, h = int(xs[-1]) - x0 + 1, int(ys[-1]) - y0 + 1
        polygons, replaced = _mask_polygons(visible[y0 : y0 + h, x0 : x0 + w])
        shift = np.array([x0, y0], dtype=np.float64)
        polygons = [(np.array(p).reshape(-1, 2) + shift).reshape(-1).tolist() for p in polygons]
        stats["replaced_polygons"] += replaced
        annotations.append(
            {
                "category_id": int(class_id),
                "segmentation": polygons,
                "bbox": [float(x0), float(y0), float(w), float(h)],
                "area": float(counts[k]),
                "iscrowd": 0,
            }
        )
    return annotations, stats


def _encode(ext, array, params=()):
    ok, buf = cv2.imencode(ext, array, list(params))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode an image as {ext}")
    return buf.tobytes()


def _write_bytes(path, data):
    with open(path, "wb") as f:
        f.write(data)


def _generate_one(task):
    """Render image ``index`` of a split, write its JPEG and label PNG, return its JSON record."""
    root, split, index, image_size, seed = task
    out = render_synthetic_image(_image_rng(seed, split, index), image_size)
    name = f"{split}_{index:06d}"
    paths = synthetic_split_paths(root, split)
    bgr = cv2.cvtColor(out["image"], cv2.COLOR_RGB2BGR)
    _write_bytes(
        os.path.join(paths["image_root"], name + ".JPEG"),
        _encode(".jpg", bgr, (cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY)),
    )
    _write_bytes(os.path.join(paths["sem_seg_root"], name + ".png"), _encode(".png", out["label"]))
    annotations, stats = image_annotations(out["instance_map"], out["instance_classes"])
    label_counts = np.bincount(out["label"].ravel(), minlength=BACKGROUND_ID + 1)
    height, width = out["label"].shape
    return {
        "image": {"file_name": name + ".JPEG", "height": int(height), "width": int(width)},
        "annotations": annotations,
        "stats": stats,
        "label_counts": label_counts,
    }


def _worker_init():
    cv2.setNumThreads(1)


def _remove_stale_files(paths, split):
    """Delete files of an earlier generation of this split (only names this generator writes)."""
    removed = 0
    for folder, ext in ((paths["image_root"], ".JPEG"), (paths["sem_seg_root"], ".png")):
        for fname in os.listdir(folder):
            if fname.startswith(f"{split}_") and fname.endswith(ext):
                os.remove(os.path.join(folder, fname))
                removed += 1
    if removed:
        logger.info(f"Removed {removed} files of an earlier generation of split {split!r}.")


def generate_synthetic_parts(
    root,
    split,
    num_images=None,
    image_size=DEFAULT_IMAGE_SIZE,
    seed=DEFAULT_SEED,
    num_workers=None,
    show_progress=True,
):
    """Generate (or regenerate) one split of the synthetic part dataset under ``root``.

    Args:
        root (str): dataset root (e.g. ``$DETECTRON2_DATASETS/synthetic_parts``).
        split (str): split name, e.g. "train", "val", "test"; it seeds the split.
        num_images (int or None): number of images; None = :data:`DEFAULT_SPLIT_SIZES` [split].
        image_size (int): image side in pixels (square images).
        seed (int): base seed; the split's images use seeds derived from (seed, split, index).
        num_workers (int or None): worker processes; None = up to 2 (0 for small splits), 0 = run
            in this process. The output does not depend on it.
        show_progress (bool): show a tqdm progress bar.

    Returns:
        dict summary: split, num_images, num_annotations, images_without_annotations,
        occluded_instances (drawn but fully hidden: no annotation), replaced_polygons (1-2 pixel
        fragments whose polygon became the rectangle around them), annotations_per_class
        {name: count}, pixel_fraction_per_class {name: fraction, incl. "background"}, json_file,
        seconds.

    The split's JSON is written last (atomically), so its presence means the split is complete.
    """
    if num_images is None:
        if split not in DEFAULT_SPLIT_SIZES:
            raise ValueError(
                f"No default size for split {split!r}; pass num_images "
                f"(defaults exist for {sorted(DEFAULT_SPLIT_SIZES)})."
            )
        num_images = DEFAULT_SPLIT_SIZES[split]
    num_images, image_size, seed = int(num_images), int(image_size), int(seed)
    if num_images < 0 or image_size < 32:
        raise ValueError(
            f"Need num_images >= 0 and image_size >= 32, got {num_images}, {image_size}"
        )
    start = time.perf_counter()
    paths = synthetic_split_paths(root, split)
    os.makedirs(paths["image_root"], exist_ok=True)
    os.makedirs(paths["sem_seg_root"], exist_ok=True)
    if os.path.exists(paths["json_file"]):
        os.remove(paths["json_file"])
    _remove_stale_files(paths, split)

    if num_workers is None:
        num_workers = 0 if num_images < 64 else min(2, os.cpu_count() or 1)
    tasks = [(root, split, i, image_size, seed) for i in range(num_images)]
    desc = f"synthetic_parts {split}"
    if num_workers > 0:
        # "spawn", not "fork": forking a process whose torch/OpenMP threads already ran can
        # deadlock the children (seen in the full test suite).
        with mp.get_context("spawn").Pool(num_workers, initializer=_worker_init) as pool:
            it = pool.imap(_generate_one, tasks, chunksize=8)
            records = list(tqdm(it, total=num_images, desc=desc, disable=not show_progress))
    else:
        records = [_generate_one(t) for t in tqdm(tasks, desc=desc, disable=not show_progress)]

    images, annotations = [], []
    stats = {"occluded_instances": 0, "replaced_polygons": 0}
    label_counts = np.zeros(BACKGROUND_ID + 1, dtype=np.int64)
    ann_per_class = np.zeros(BACKGROUND_ID, dtype=np.int64)
    no_ann = 0
    for image_id, rec in enumerate(records, start=1):
        images.append({"id": image_id, **rec["image"]})
        no_ann += not rec["annotations"]
        for ann in rec["annotations"]:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **ann})
            ann_per_class[ann["category_id"]] += 1
        for key in stats:
            stats[key] += rec["stats"][key]
        label_counts += rec["label_counts"]
    categories = [
        {"id": i, "name": name, "supercategory": sup}
        for i, (name, sup) in enumerate(zip(SYNTHETIC_PART_CLASSES, SYNTHETIC_PART_SUPERCATEGORIES))
    ]
    info = {
        "description": "WPS-SAM synthetic part dataset (PartImageNet segmentation-release format)",
        "generator": "wps_sam.synthetic.parts",
        "version": GENERATOR_VERSION,
        "split": split,
        "seed": seed,
        "image_size": image_size,
        "num_images": num_images,
        "background_id": BACKGROUND_ID,
    }
    coco = {"info": info, "images": images, "annotations": annotations, "categories": categories}
    tmp = paths["json_file"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(coco, f)
    os.replace(tmp, paths["json_file"])

    total_pixels = max(int(label_counts.sum()), 1)
    names = SYNTHETIC_PART_CLASSES + ["background"]
    summary = {
        "split": split,
        "num_images": num_images,
        "num_annotations": len(annotations),
        "images_without_annotations": int(no_ann),
        **stats,
        "annotations_per_class": dict(zip(SYNTHETIC_PART_CLASSES, ann_per_class.tolist())),
        "pixel_fraction_per_class": {
            n: float(c) / total_pixels for n, c in zip(names, label_counts.tolist())
        },
        "json_file": paths["json_file"],
        "seconds": time.perf_counter() - start,
    }
    logger.info(
        f"Generated synthetic_parts split {split!r}: {num_images} images, {len(annotations)} part "
        f"annotations, {no_ann} images without parts, {stats['occluded_instances']} fully hidden "
        f"part instances (no annotation), in {summary['seconds']:.1f}s -> {paths['json_file']}"
    )
    return summary
