"""Prediction overlays of a registered dataset (image | ground truth | prediction, with a part
legend): the logic of ``tools/visualize_predictions.py``, also used by the benchmark runner."""

import os

import cv2
import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model
from tqdm import tqdm

from ..data.dataset_mappers.wps_sam_dataset_mapper import WPSSAMDatasetMapper
from ..visualization import save_part_overlay

__all__ = ["visualize"]


def visualize(cfg, dataset_name, output_dir, num_images=4, stride=None):
    """Run the model on ``num_images`` images of ``dataset_name``; returns the written paths."""
    model = build_model(cfg)
    DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    model.eval()
    mapper = WPSSAMDatasetMapper(cfg, is_train=False)
    dicts = DatasetCatalog.get(dataset_name)
    metadata = MetadataCatalog.get(dataset_name)
    stride = stride or max(1, len(dicts) // max(num_images, 1))
    paths = []
    for d in tqdm(dicts[::stride][:num_images], desc="overlays"):
        x = mapper(d)
        with torch.no_grad():
            (out,) = model([x])
        pred = out["sem_seg"].argmax(0).cpu().numpy()
        gt = x["sem_seg"].numpy() if "sem_seg" in x else None
        image = x["image"].permute(1, 2, 0).numpy()
        # Show the original resolution: resize the model input back.
        image = cv2.resize(image, (d["width"], d["height"]), interpolation=cv2.INTER_LINEAR)
        name = os.path.splitext(os.path.basename(d["file_name"]))[0]
        kept = f"{len(out['instances'])} part prompts kept" if "instances" in out else "sem_seg"
        title = f"{name}: {kept}"
        path = os.path.join(output_dir, f"{name}.png")
        paths.append(
            save_part_overlay(np.ascontiguousarray(image), pred, gt, metadata, path, title)
        )
    return paths
