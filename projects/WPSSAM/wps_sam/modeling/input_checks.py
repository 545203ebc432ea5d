"""Checks of the model's input dicts: a clear error instead of a failure deep inside torch.

:class:`~wps_sam.WPSSAM` calls :func:`check_batched_inputs` first thing in ``forward``, so that
user code calling the model directly (not through ``WPSSAMDatasetMapper`` or
:class:`~wps_sam.engine.WPSSAMPredictor`, which produce valid inputs) learns what is wrong with
which input and what to pass instead.
"""

from typing import Dict, List, Optional, Sequence

import torch

__all__ = ["check_batched_inputs"]

_EXPECTED = (
    "expected a (3, H, W) uint8 RGB torch tensor (WPSSAMDatasetMapper makes one; for numpy images "
    "use wps_sam.engine.WPSSAMPredictor, which converts grayscale, RGBA and PIL images)"
)


def _check_image(image, where: str) -> None:
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{where}['image'] is a {type(image).__name__}: {_EXPECTED}.")
    if image.dim() != 3 or image.shape[0] != 3:
        hint = ""
        if image.dim() == 2:
            hint = " It is 2-D (grayscale): repeat it to 3 channels, image.expand(3, -1, -1)."
        elif image.dim() == 3 and image.shape[-1] in (1, 3, 4) and image.shape[0] not in (1, 3, 4):
            hint = " It looks channels-last (H, W, C): pass image.permute(2, 0, 1)."
        elif image.dim() == 3 and image.shape[0] == 4:
            hint = " It has 4 channels (RGBA?): drop the alpha channel, image[:3]."
        elif image.dim() == 3 and image.shape[0] == 1:
            hint = " It has 1 channel: repeat it to 3, image.expand(3, -1, -1)."
        raise ValueError(f"{where}['image'] has shape {tuple(image.shape)}: {_EXPECTED}.{hint}")
    if image.shape[1] == 0 or image.shape[2] == 0:
        raise ValueError(
            f"{where}['image'] is empty ({image.shape[1]} x {image.shape[2]} pixels): there is "
            "nothing to segment; skip this image."
        )
    if image.is_floating_point() and image.numel() and not torch.isfinite(image).all():
        raise ValueError(f"{where}['image'] holds NaN or infinite values.")


def check_batched_inputs(
    batched_inputs: List[Dict],
    *,
    num_classes: int,
    embedding_shape: Optional[Sequence[int]] = None,
    training: bool = False,
) -> None:
    """Raise ``TypeError``/``ValueError``/``KeyError`` naming the input and the problem.

    Args:
        batched_inputs: the model's input, a list of dicts (see :meth:`WPSSAM.forward`).
        num_classes: C; ground-truth classes must lie in ``0..C-1``.
        embedding_shape: (D, E, E) of SAM's image embedding, checked against "image_embedding".
        training: training inputs must carry "instances".
    """
    if not isinstance(batched_inputs, (list, tuple)) or not batched_inputs:
        raise TypeError(
            "WPSSAM takes a non-empty list of dicts, one per image (detectron2's model input "
            f"format), got {type(batched_inputs).__name__}"
            + (" of length 0" if isinstance(batched_inputs, (list, tuple)) else "")
        )
    for i, x in enumerate(batched_inputs):
        where = f"batched_inputs[{i}]"
        if not isinstance(x, dict):
            raise TypeError(f"{where} is a {type(x).__name__}, not a dict with an 'image'.")
        name = f" ({x['file_name']})" if "file_name" in x else ""
        if "image" in x:
            try:
                _check_image(x["image"], where)
            except (TypeError, ValueError) as e:
                raise type(e)(f"{e}{name}") from None
        if "image_embedding" in x:
            emb = x["image_embedding"]
            if not isinstance(emb, torch.Tensor) or (
                embedding_shape is not None and tuple(emb.shape) != tuple(embedding_shape)
            ):
                got = tuple(emb.shape) if isinstance(emb, torch.Tensor) else type(emb).__name__
                raise ValueError(
                    f"{where}['image_embedding'] is {got}, expected a tensor of shape "
                    f"{tuple(embedding_shape or ())} (this SAM's image embedding){name}: it was "
                    "computed by another SAM; recompute it (tools/cache_embeddings.py) or drop it."
                )
        elif "image" not in x:
            raise KeyError(f"{where} needs an 'image' or an 'image_embedding'{name}.")
        for key in ("height", "width"):
            if key in x and int(x[key]) <= 0:
                raise ValueError(
                    f"{where}['{key}'] is {x[key]}: the output size must be > 0{name}."
                )
        if "instances" in x:
            inst = x["instances"]
            if not inst.has("gt_boxes") or not inst.has("gt_classes"):
                raise KeyError(f"{where}['instances'] needs gt_boxes and gt_classes{name}.")
            classes = inst.gt_classes
            if len(classes) and (int(classes.min()) < 0 or int(classes.max()) >= num_classes):
                raise ValueError(
                    f"{where}['instances'].gt_classes holds {sorted(set(classes.tolist()))}, "
                    f"outside the model's part classes 0..{num_classes - 1}{name}: the dataset "
                    "and MODEL.WPS_SAM.NUM_CLASSES disagree (or the ids are not contiguous)."
                )
            boxes = inst.gt_boxes.tensor
            if boxes.numel() and not torch.isfinite(boxes).all():
                raise ValueError(
                    f"{where}['instances'].gt_boxes holds NaN or infinite values{name}."
                )
        elif training:
            raise KeyError(
                f"Training needs 'instances' with gt_boxes/gt_classes in every input; {where} has "
                f"none{name} (WPSSAMDatasetMapper with is_train=True provides them)."
            )
