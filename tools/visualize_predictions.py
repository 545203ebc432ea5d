#!/usr/bin/env python
"""Save prediction overlays (image | ground truth | prediction, with a part legend).

    python tools/visualize_predictions.py --config-file configs/wps_sam.yaml \
        --dataset partimagenet_val --num-images 8 --output output/overlays MODEL.WEIGHTS model.pth
"""

import argparse
import os

import cv2
import numpy as np
import torch
from tqdm import tqdm

import wps_sam  # noqa: F401  isort:skip
from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402

from wps_sam.cli_config import load_wps_sam_cfg  # noqa: E402
from wps_sam.data import WPSSAMDatasetMapper  # noqa: E402
from wps_sam.visualization import save_part_overlay  # noqa: E402


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--dataset", default=None, help="default: the first of DATASETS.TEST")
    parser.add_argument("--num-images", type=int, default=4)
    parser.add_argument("--output", default="output/overlays")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args()
    cfg = load_wps_sam_cfg(args.config_file, args.opts)
    for p in visualize(cfg, args.dataset or cfg.DATASETS.TEST[0], args.output, args.num_images):
        print(p)


if __name__ == "__main__":
    main()
