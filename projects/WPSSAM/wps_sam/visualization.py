"""Overlays of part predictions next to the ground truth (detectron2 Visualizer + a legend)."""

import colorsys
import os
from typing import List, Optional

import numpy as np
from detectron2.utils.visualizer import ColorMode, Visualizer

__all__ = ["part_palette", "save_part_overlay"]


def part_palette(num_classes: int) -> List[List[int]]:
    """Distinct RGB colours for ``num_classes`` parts (deterministic, evenly spaced hues)."""
    colors = []
    for i in range(num_classes):
        hue = (i * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, 0.75 if i % 2 else 0.95, 0.95 if i % 3 else 0.8)
        colors.append([int(255 * r), int(255 * g), int(255 * b)])
    return colors


class _PaletteMetadata:
    """Metadata view with fixed part colours, so legend and overlays agree."""

    def __init__(self, metadata, colors):
        self._metadata = metadata
        self.stuff_colors = colors

    def __getattr__(self, name):
        return getattr(self._metadata, name)

    def get(self, name, default=None):
        if name == "stuff_colors":
            return self.stuff_colors
        return self._metadata.get(name, default)


def _overlay(image_rgb, label_map, metadata, background_id):
    shown = label_map.copy()
    shown[label_map == background_id] = 255  # background and ignore are left undrawn
    vis = Visualizer(image_rgb, metadata, instance_mode=ColorMode.SEGMENTATION)
    return vis.draw_sem_seg(shown, alpha=0.55, area_threshold=0).get_image()


def save_part_overlay(
    image_rgb: np.ndarray,
    pred_label_map: np.ndarray,
    gt_label_map: Optional[np.ndarray],
    metadata,
    out_path: str,
    title: str = "",
):
    """Save ``image | ground truth | prediction`` with part names on the regions and a legend.

    Args:
        image_rgb: (H, W, 3) uint8.
        pred_label_map, gt_label_map: (H, W) integer label maps (background = number of parts,
            255 = ignore); ``gt_label_map`` may be None.
        metadata: the dataset's detectron2 Metadata (stuff_classes with "background" last).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches as mpatches
    import matplotlib.pyplot as plt

    names = list(metadata.stuff_classes)
    background_id = metadata.get("background_id", len(names) - 1)
    colors = part_palette(len(names))
    meta = _PaletteMetadata(metadata, colors)
    panels = [("image", image_rgb)]
    if gt_label_map is not None:
        panels.append(("ground truth", _overlay(image_rgb, gt_label_map, meta, background_id)))
    panels.append(("prediction", _overlay(image_rgb, pred_label_map, meta, background_id)))
    present = set(np.unique(pred_label_map).tolist())
    if gt_label_map is not None:
        present |= set(np.unique(gt_label_map).tolist())
    present = sorted(c for c in present if c != background_id and 0 <= c < len(names))

    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.6))
    for ax, (label, img) in zip(np.atleast_1d(axes), panels):
        ax.imshow(img)
        ax.set_title(label)
        ax.axis("off")
    handles = [mpatches.Patch(color=np.array(colors[c]) / 255.0, label=names[c]) for c in present]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 0.95))
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path
