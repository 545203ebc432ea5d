"""A tiny dataset in the exact PartImageNet segmentation-release layout, with the release's quirks.

Layout written under ``root``::

    PartImageNet/images/<split>/<synset>_<n>.JPEG
    PartImageNet/annotations/<split>/<split>.json      (COCO style, categories 0..39)
    PartImageNet/annotations/<split>/<synset>_<n>.png  (label map, 40 = background)

Images (``FIXTURE_IMAGES``): parts are axis-aligned rectangles so that boxes, polygons and label
maps agree exactly.

* ``n01440764_101``: 40 x 60 (h x w); a Quadruped Head (id 0) with a normal polygon, a Quadruped
  Body (1) whose only polygon has 4 numbers (quirk: box kept, polygon dropped), a Quadruped Foot
  (2) with ``area`` 0 but a valid box (quirk: kept), and a Quadruped Tail (3) annotation whose box
  has zero width (dropped: nothing to prompt with; it is not drawn in the label map either).
* ``n01443537_202``: 30 x 30, no annotations (quirk: kept for evaluation), all background.
* ``n02085620_303``: 50 x 20; one Fish Fin (11) with two polygons, one of them with 4 numbers.
"""

import json
import os

import numpy as np
from PIL import Image

PARTIMAGENET_NAMES = [
    "Quadruped Head",
    "Quadruped Body",
    "Quadruped Foot",
    "Quadruped Tail",
    "Biped Head",
    "Biped Body",
    "Biped Hand",
    "Biped Foot",
    "Biped Tail",
    "Fish Head",
    "Fish Body",
    "Fish Fin",
    "Fish Tail",
    "Bird Head",
    "Bird Body",
    "Bird Wing",
    "Bird Foot",
    "Bird Tail",
    "Snake Head",
    "Snake Body",
    "Reptile Head",
    "Reptile Body",
    "Reptile Foot",
    "Reptile Tail",
    "Car Body",
    "Car Tier",
    "Car Side Mirror",
    "Bicycle Body",
    "Bicycle Head",
    "Bicycle Seat",
    "Bicycle Tier",
    "Boat Body",
    "Boat Sail",
    "Aeroplane Head",
    "Aeroplane Body",
    "Aeroplane Engine",
    "Aeroplane Wing",
    "Aeroplane Tail",
    "Bottle Mouth",
    "Bottle Body",
]
SUPERCATEGORIES = [n.rsplit(" ", 1)[0].replace(" Side", "") for n in PARTIMAGENET_NAMES]
BACKGROUND = 40


def _rect_polygon(x0, y0, x1, y1):
    return [x0, y0, x1, y0, x1, y1, x0, y1]


# name -> (height, width, [(category, box xywh, polygons, area, drawn in label map)])
FIXTURE_IMAGES = {
    "n01440764_101": (
        40,
        60,
        [
            (0, [4, 6, 10, 8], [_rect_polygon(4, 6, 14, 14)], 80, True),
            (1, [20, 10, 30, 20], [[20, 10, 50, 30]], 600, True),
            (2, [52, 30, 6, 8], [_rect_polygon(52, 30, 58, 38)], 0, True),
            (3, [0, 0, 0, 5], [[0, 0, 0, 5]], 0, False),
        ],
    ),
    "n01443537_202": (30, 30, []),
    "n02085620_303": (
        50,
        20,
        [(11, [2, 5, 12, 30], [_rect_polygon(2, 5, 14, 35), [1, 1, 2, 2]], 360, True)],
    ),
}


def label_map(height, width, anns):
    """The label map of one fixture image: rectangles of the drawn annotations on background."""
    label = np.full((height, width), BACKGROUND, dtype=np.uint8)
    for cat, (x, y, w, h), _, _, drawn in anns:
        if drawn:
            label[y : y + h, x : x + w] = cat
    return label


def make_partimagenet(root, split="val", names=None):
    """Write the fixture split under ``root``; returns the ``PartImageNet`` folder."""
    names = names or PARTIMAGENET_NAMES
    base = os.path.join(root, "PartImageNet")
    img_dir = os.path.join(base, "images", split)
    ann_dir = os.path.join(base, "annotations", split)
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for image_id, (stem, (h, w, anns)) in enumerate(FIXTURE_IMAGES.items()):
        pixels = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(os.path.join(img_dir, stem + ".JPEG"), format="JPEG")
        Image.fromarray(label_map(h, w, anns)).save(os.path.join(ann_dir, stem + ".png"))
        with open(os.path.join(ann_dir, stem + ".json"), "w") as f:
            json.dump({"imgHeight": h, "imgWidth": w}, f)
        images.append({"id": image_id, "file_name": stem + ".JPEG", "height": h, "width": w})
        for cat, bbox, polys, area, _ in anns:
            annotations.append(
                {
                    "id": len(annotations),
                    "image_id": image_id,
                    "category_id": cat,
                    "segmentation": polys,
                    "bbox": bbox,
                    "area": area,
                    "iscrowd": 0,
                }
            )
    categories = [
        {"id": i, "name": n, "supercategory": s}
        for i, (n, s) in enumerate(zip(names, SUPERCATEGORIES))
    ]
    with open(os.path.join(ann_dir, f"{split}.json"), "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
    return base
