#!/usr/bin/env python
"""Convert the official PASCAL-Part files into the project's part-segmentation format.

Inputs (see datasets/README.md for where to get them), under ``$DETECTRON2_DATASETS/PASCAL-Part``
unless given explicitly:

* ``Annotations_Part/<id>.mat`` (Pascal-Part), read as
  ``a = scipy.io.loadmat(f)["anno"][0][0]``: ``a[0][0]`` image name, ``a[1][0]`` objects; object
  ``o``: ``o[0][0]`` class, ``o[1][0][0]`` class index, ``o[2]`` mask, ``o[3]`` parts (empty or
  ``o[3][0]``); part ``p``: ``p[0][0]`` name, ``p[1]`` mask.
* ``VOCdevkit/VOC2010/JPEGImages/<id>.jpg`` and ``VOCdevkit/VOC2010/ImageSets/Main/<split>.txt``.

Outputs, under ``PASCAL-Part/parts`` (what ``pascal_part_{train,val}`` read):

* ``labels/<split>/<id>.png``: uint8 label map; merged part ids of
  ``wps_sam/data/pascal_part_classes.py`` (0..C-1), background C, 255 = ignore (pixels of an
  object of the 16 classes that no known part covers);
* ``<split>.json``: COCO-style JSON; one annotation per part instance with ``bbox`` (xywh),
  ``segmentation`` (RLE), ``area``, ``category_id`` (merged part), ``object_class``, ``object_id``.
  A part instance is a connected component (8-connectivity) of an object's merged-part mask
  (``--instances component``, default: two wheels give two boxes), or the whole merged-part mask of
  an object (``--instances object``); components under ``--min-area`` pixels get no box (their
  pixels stay labelled) and are counted.

Resumable: each image is converted once into its label PNG and a small record in
``parts/cache/<split>/<id>.json`` (atomic writes); a rerun skips converted images (``--overwrite``
redoes them) and rebuilds the split JSON and the summary from the records.

Example::

    python datasets/prepare_pascal_part.py                 # $DETECTRON2_DATASETS/PASCAL-Part
    python datasets/prepare_pascal_part.py --root /data/PASCAL-Part --splits val
"""

import argparse
import json
import os
import sys
from collections import Counter

import cv2
import numpy as np
import pycocotools.mask as mask_util
import scipy.io
from PIL import Image
from tqdm import tqdm

from wps_sam.data.pascal_part_classes import (  # noqa: E402  (imports wps_sam, thus detectron2)
    PASCAL_PART_BACKGROUND_ID,
    PASCAL_PART_CLASS_ALIASES,
    PASCAL_PART_CLASSES,
    PASCAL_PART_EXCLUDED_OBJECTS,
    PASCAL_PART_IGNORE_LABEL,
    PASCAL_PART_MERGE_TABLE,
    merged_part_id,
)


def read_pascal_part_mat(path):
    """
    Read one Pascal-Part ``.mat`` file.

    Returns:
        tuple: (image name, list of objects); an object is a dict with ``class`` (str, the VOC
        name: the files' ``table`` becomes ``diningtable``, see ``PASCAL_PART_CLASS_ALIASES``),
        ``class_index`` (int), ``mask`` (H x W bool) and ``parts``, a list of (name, H x W bool).
    """
    anno = scipy.io.loadmat(path)["anno"][0][0]
    name = str(anno[0][0])
    objects = []
    if anno[1].size:
        for o in anno[1][0]:
            parts = []
            if o[3].size:
                parts = [(str(p[0][0]), np.asarray(p[1]).astype(bool)) for p in o[3][0]]
            objects.append(
                {
                    "class": PASCAL_PART_CLASS_ALIASES.get(str(o[0][0]), str(o[0][0])),
                    "class_index": int(o[1][0][0]),
                    "mask": np.asarray(o[2]).astype(bool),
                    "parts": parts,
                }
            )
    return name, objects


def _image_id(name):
    digits = "".join(ch for ch in name if ch.isdigit())
    return int(digits) if digits else abs(hash(name)) % (10**12)


def _rle(mask):
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _instances(mask, mode, min_area):
    """Yield (instance mask, area) and count the fragments below ``min_area``."""
    if mode == "object":
        yield mask, int(mask.sum())
        return
    n, comp, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    for k in range(1, n):
        yield comp == k, int(stats[k, cv2.CC_STAT_AREA])


def convert_image(mat_path, image_path, mode="component", min_area=10):
    """
    Convert one image.

    Returns:
        tuple: (label map H x W uint8 or None, list of annotation dicts, Counter of stats). The
        label map is None when the image is dropped (the reason is in the stats).
    """
    stats = Counter()
    try:
        with Image.open(image_path) as im:
            width, height = im.size
    except (OSError, FileNotFoundError):
        stats["images dropped: JPEG missing or unreadable"] += 1
        return None, [], stats
    name, objects = read_pascal_part_mat(mat_path)
    label = np.full((height, width), PASCAL_PART_BACKGROUND_ID, dtype=np.uint8)
    merged = []  # (object index, object class, part id, mask)
    for oi, obj in enumerate(objects):
        cls = obj["class"]
        if obj["mask"].shape != (height, width):
            stats["objects dropped: mask size differs from the image"] += 1
            continue
        if cls in PASCAL_PART_EXCLUDED_OBJECTS:
            stats[f"objects of classes without parts (background): {cls}"] += 1
            continue
        if cls not in PASCAL_PART_MERGE_TABLE:
            stats[f"objects of unknown class (ignored pixels): {cls}"] += 1
            label[obj["mask"]] = PASCAL_PART_IGNORE_LABEL
            continue
        stats["objects of the 16 part classes"] += 1
        label[obj["mask"]] = PASCAL_PART_IGNORE_LABEL
        if not obj["parts"]:
            stats["objects without part annotations (pixels ignored)"] += 1
        per_part = {}
        for part_name, pmask in obj["parts"]:
            pid = merged_part_id(cls, part_name)
            if pid is None:
                stats[f"parts not in the merge table (pixels ignored): {cls}/{part_name}"] += 1
                label[pmask] = PASCAL_PART_IGNORE_LABEL
                continue
            per_part[pid] = per_part[pid] | pmask if pid in per_part else pmask.copy()
        merged.extend((oi, cls, pid, m) for pid, m in sorted(per_part.items()))

    annotations = []
    for oi, cls, pid, mask in merged:
        label[mask] = pid
    for oi, cls, pid, mask in merged:
        mask = mask & (label == pid)  # pixels another object's part took are not this part's
        for inst, area in _instances(mask, mode, min_area):
            if area == 0:
                continue
            if area < min_area:
                stats["part fragments below --min-area (no box, pixels kept)"] += 1
                continue
            x, y, w, h = (float(v) for v in mask_util.toBbox(_rle(inst)))
            annotations.append(
                {
                    "category_id": pid,
                    "bbox": [x, y, w, h],
                    "area": area,
                    "segmentation": _rle(inst),
                    "iscrowd": 0,
                    "object_class": cls,
                    "object_id": oi,
                }
            )
    if not merged:
        stats["images dropped: no part annotation of the 16 classes"] += 1
        return None, [], stats
    stats["images"] += 1
    for a in annotations:
        stats[f"part instances: {PASCAL_PART_CLASSES[a['category_id']]}"] += 1
    return label, annotations, stats


def _atomic_write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def convert_split(split, voc_root, part_anno_dir, out_dir, mode, min_area, overwrite=False):
    """Convert one split; returns (path of the split JSON, Counter summary)."""
    list_file = os.path.join(voc_root, "ImageSets", "Main", f"{split}.txt")
    if not os.path.isfile(list_file):
        raise FileNotFoundError(
            f"{list_file} not found: it lists the VOC2010 {split} images. See datasets/README.md."
        )
    if not os.path.isdir(part_anno_dir):
        raise FileNotFoundError(
            f"{part_anno_dir} not found: it holds the Pascal-Part .mat files. "
            "See datasets/README.md."
        )
    with open(list_file) as f:
        names = [line.split()[0] for line in f if line.strip()]
    label_dir = os.path.join(out_dir, "labels", split)
    cache_dir = os.path.join(out_dir, "cache", split)
    os.makedirs(label_dir, exist_ok=True)
    os.makedirs(cache_dir, exist_ok=True)

    summary = Counter()
    images, annotations = [], []
    resumed = 0
    for name in tqdm(names, desc=f"PASCAL-Part {split}", unit="img", dynamic_ncols=True):
        record_path = os.path.join(cache_dir, name + ".json")
        label_path = os.path.join(label_dir, name + ".png")
        record = None
        if not overwrite and os.path.isfile(record_path):
            with open(record_path) as f:
                record = json.load(f)
            if record["image"] is not None and not os.path.isfile(label_path):
                record = None  # the label PNG went missing: redo
            else:
                resumed += 1
        if record is None:
            mat_path = os.path.join(part_anno_dir, name + ".mat")
            if not os.path.isfile(mat_path):
                record = {
                    "image": None,
                    "annotations": [],
                    "stats": {"images dropped: no Annotations_Part .mat": 1},
                }
            else:
                image_path = os.path.join(voc_root, "JPEGImages", name + ".jpg")
                label, anns, stats = convert_image(mat_path, image_path, mode, min_area)
                image = None
                if label is not None:
                    tmp = label_path + ".tmp.png"
                    Image.fromarray(label).save(tmp)
                    os.replace(tmp, label_path)
                    h, w = label.shape
                    image = {
                        "id": _image_id(name),
                        "file_name": name + ".jpg",
                        "height": h,
                        "width": w,
                    }
                record = {"image": image, "annotations": anns, "stats": dict(stats)}
            _atomic_write_json(record_path, record)
        summary.update(record["stats"])
        if record["image"] is not None:
            images.append(record["image"])
            for ann in record["annotations"]:
                annotations.append(
                    dict(ann, id=len(annotations) + 1, image_id=record["image"]["id"])
                )

    categories = [
        {"id": i, "name": n, "supercategory": n.split(" ")[0]}
        for i, n in enumerate(PASCAL_PART_CLASSES)
    ]
    json_file = os.path.join(out_dir, f"{split}.json")
    _atomic_write_json(
        json_file,
        {
            "info": {
                "description": f"PASCAL-Part {split}, merged parts (wps_sam pascal_part_classes)",
                "background_id": PASCAL_PART_BACKGROUND_ID,
                "ignore_label": PASCAL_PART_IGNORE_LABEL,
                "instances": mode,
                "min_area": min_area,
            },
            "images": images,
            "annotations": annotations,
            "categories": categories,
        },
    )
    summary["images listed"] = len(names)
    summary["images resumed from a previous run"] = resumed
    return json_file, summary


def print_summary(split, json_file, summary, out=sys.stdout):
    print(f"\n== PASCAL-Part {split}: {json_file}", file=out)
    print(
        f"images listed: {summary['images listed']}, written: {summary['images']} "
        f"(resumed: {summary['images resumed from a previous run']})",
        file=out,
    )
    groups = [
        ("Part instances per class", "part instances: "),
        ("Dropped", "images dropped: "),
        ("Objects", "objects"),
        ("Parts / fragments", "part"),
    ]
    shown = {"images listed", "images", "images resumed from a previous run"}
    for title, prefix in groups:
        keys = sorted(k for k in summary if k.startswith(prefix) and k not in shown)
        if keys:
            print(f"-- {title}:", file=out)
            for k in keys:
                print(f"   {k}: {summary[k]}", file=out)
            shown.update(keys)


def main(argv=None):
    root_default = os.path.join(os.getenv("DETECTRON2_DATASETS", "datasets"), "PASCAL-Part")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=root_default, help="the PASCAL-Part folder")
    parser.add_argument("--voc-root", default=None, help="default: <root>/VOCdevkit/VOC2010")
    parser.add_argument("--part-anno-dir", default=None, help="default: <root>/Annotations_Part")
    parser.add_argument("--out-dir", default=None, help="default: <root>/parts")
    parser.add_argument("--splits", nargs="+", default=["train", "val"])
    parser.add_argument("--instances", choices=["component", "object"], default="component")
    parser.add_argument("--min-area", type=int, default=10, help="smallest part box, in pixels")
    parser.add_argument("--overwrite", action="store_true", help="redo converted images")
    args = parser.parse_args(argv)
    voc_root = args.voc_root or os.path.join(args.root, "VOCdevkit", "VOC2010")
    part_anno_dir = args.part_anno_dir or os.path.join(args.root, "Annotations_Part")
    out_dir = args.out_dir or os.path.join(args.root, "parts")
    results = {}
    for split in args.splits:
        json_file, summary = convert_split(
            split, voc_root, part_anno_dir, out_dir, args.instances, args.min_area, args.overwrite
        )
        print_summary(split, json_file, summary)
        results[split] = summary
    return results


if __name__ == "__main__":
    main()
