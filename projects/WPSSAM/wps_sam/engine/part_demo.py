"""The demo's engine (demo/demo.py): image lists, prediction and the files written per image."""

import glob
import os
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
from detectron2.data import MetadataCatalog

from ..visualization import save_part_overlay
from .predictor import WPSSAMPredictor, read_image_file

__all__ = ["IMAGE_EXTENSIONS", "PartSegmentationDemo", "collect_images"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def collect_images(inputs: List[str]) -> Tuple[List[str], List[str]]:
    """
    Expand the demo's ``--input`` arguments into image paths.

    Args:
        inputs: files (taken as given, whatever their extension), folders (their files with an
            :data:`IMAGE_EXTENSIONS` extension, not recursive, sorted) and glob patterns
            (``"photos/*.jpg"``, ``"data/**/*.png"``; sorted).

    Returns:
        (paths, unmatched): the image paths in order without duplicates, and the arguments that
        matched nothing (a missing file, an empty folder, a glob without match).
    """
    paths, unmatched, seen = [], [], set()
    for arg in inputs:
        arg = os.path.expanduser(arg)
        if os.path.isdir(arg):
            found = sorted(
                os.path.join(arg, n)
                for n in os.listdir(arg)
                if n.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(arg, n))
            )
        elif os.path.isfile(arg):
            found = [arg]
        else:
            found = sorted(p for p in glob.glob(arg, recursive=True) if os.path.isfile(p))
        if not found:
            unmatched.append(arg)
        for p in found:
            if os.path.abspath(p) not in seen:
                seen.add(os.path.abspath(p))
                paths.append(p)
    return paths, unmatched


class PartSegmentationDemo:
    """
    Runs a WPS-SAM model on image files and writes, per image:

    * ``<name>.png``: ``image | prediction`` with part names on the regions and a colour legend
      (detectron2's ``Visualizer`` through :func:`wps_sam.visualization.save_part_overlay`);
    * ``<name>_labels.png`` (``save_label_png``): the label map, uint8, one value per pixel:
      the part id (``metadata.stuff_classes`` index), background = the number of parts;
    * ``<name>_parts/<k>_<part>_<score>.png`` (``save_part_masks``): each kept part prompt's
      binary mask (0/255), ``k`` in decreasing score order.
    """

    def __init__(self, cfg, metadata_name: Optional[str] = None, predictor=None):
        """
        Args:
            cfg: a WPS-SAM config (``MODEL.WEIGHTS``: the trained prompter).
            metadata_name: the dataset whose part names to show; default the first of
                ``DATASETS.TEST``, else of ``DATASETS.TRAIN``.
            predictor: a callable image -> model output; default ``WPSSAMPredictor(cfg)``.
        """
        names = list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN)
        metadata_name = metadata_name or (names[0] if names else None)
        if metadata_name is None:
            raise ValueError(
                "The demo needs part names: set DATASETS.TEST (or pass --metadata <dataset name>)."
            )
        self.metadata = MetadataCatalog.get(metadata_name)
        if not self.metadata.get("stuff_classes"):
            raise ValueError(
                f"Dataset {metadata_name!r} has no stuff_classes (part names) in its metadata: "
                "is it registered? (wps_sam registers PartImageNet, PASCAL-Part, synthetic_parts)"
            )
        self.predictor = predictor or WPSSAMPredictor(cfg)

    def run_on_file(
        self,
        path: str,
        out_base: str,
        save_label_png: bool = False,
        save_part_masks: bool = False,
    ) -> Dict:
        """
        Predict the parts of one image file and write its outputs.

        Args:
            path: the image file (any format PIL reads; EXIF orientation applied).
            out_base: output path without extension (``<out_base>.png`` is the overlay).

        Returns:
            dict {"overlay": str, "labels": str or None, "masks": [str], "num_parts": int,
            "parts": [part names present in the label map]}.

        Raises:
            OSError / ValueError naming the file when it cannot be read or segmented.
        """
        bgr = read_image_file(path)
        output = self.predictor(bgr)
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        labels = output["sem_seg"].argmax(0).to("cpu").numpy().astype(np.uint8)
        names = list(self.metadata.stuff_classes)
        background = self.metadata.get("background_id", len(names) - 1)
        instances = output["instances"].to("cpu")
        title = f"{os.path.basename(path)}: {len(instances)} part prompts kept"
        overlay = save_part_overlay(rgb, labels, None, self.metadata, out_base + ".png", title)
        result = {
            "overlay": overlay,
            "labels": None,
            "masks": [],
            "num_parts": len(instances),
            "parts": [names[c] for c in np.unique(labels) if c != background and c < len(names)],
        }
        if save_label_png:
            result["labels"] = out_base + "_labels.png"
            cv2.imwrite(result["labels"], labels)
        if save_part_masks and len(instances):
            folder = out_base + "_parts"
            os.makedirs(folder, exist_ok=True)
            order = instances.scores.argsort(descending=True).tolist()
            for k, i in enumerate(order):
                name = names[int(instances.pred_classes[i])].replace(" ", "_").replace("/", "-")
                score = float(instances.scores[i])
                mask_path = os.path.join(folder, f"{k:03d}_{name}_{score:.2f}.png")
                mask = instances.pred_masks[i].numpy().astype(np.uint8) * 255
                cv2.imwrite(mask_path, mask)
                result["masks"].append(mask_path)
        return result
