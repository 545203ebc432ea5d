"""Class-agnostic promptable pre-training of the project's tiny SAM.

As SAM was trained: a prompt (a jittered box, a random point inside the target, or the box
centre) and the image embedding go through SAM's prompt encoder and mask decoder; the predicted
mask is supervised against the target mask (at the decoder's low resolution), and the IoU head
regresses the IoU of its mask. Box prompts supervise the single-mask output
(``multimask_output=False``); a single-point prompt supervises the best of the three multimask
outputs (minimum loss, as SAM does for ambiguous prompts) and, because downstream code may prompt
with one point and ``multimask_output=False``, the single-mask output as well. The mask loss is
dice + class-balanced BCE (see ``_mask_losses`` for why not SAM's focal + dice), and the image
encoder's position embedding starts from 2D sine-cosines
(see :func:`init_sincos_position_embedding_`).

Tiny SAM v1 was trained on :mod:`wps_sam.tiny_sam.generic_shapes` alone; v2 on
:mod:`wps_sam.tiny_sam.pretraining_data` (part objects of every kind at every granularity, and
generic shapes, from a split that no benchmark split uses). The model never sees a class label.
"""

import logging
import math
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from tqdm import tqdm

from .generic_shapes import GenericShapesConfig, generate_generic_sample
from .pretraining_data import GRANULARITIES

__all__ = [
    "PromptSamplingConfig",
    "build_training_batch",
    "prompted_mask_logits",
    "sam_training_loss",
    "train_tiny_sam",
    "evaluate_prompted_sam",
    "save_sam_state_dict",
    "init_sincos_position_embedding_",
]

logger = logging.getLogger(__name__)


class PromptSamplingConfig:
    """How prompts are drawn from a sample's targets during training.

    Attributes:
        max_boxes: box prompts per image (a random subset of the targets).
        max_points: single-point prompts per image (targets that are not whole composites).
        center_point_prob: probability that a point prompt is the box centre, else a random pixel
            of the mask.
        box_jitter_prob: probability that a box prompt is jittered.
        box_jitter_std: std of the corner noise as a fraction of the box side.
        box_jitter_max: largest corner shift in pixels.
    """

    def __init__(
        self,
        max_boxes: int = 8,
        max_points: int = 2,
        center_point_prob: float = 0.4,
        box_jitter_prob: float = 0.7,
        box_jitter_std: float = 0.08,
        box_jitter_max: float = 8.0,
    ):
        self.max_boxes = max_boxes
        self.max_points = max_points
        self.center_point_prob = center_point_prob
        self.box_jitter_prob = box_jitter_prob
        self.box_jitter_std = box_jitter_std
        self.box_jitter_max = box_jitter_max


def _pad_to(x: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad the last two dims of ``x`` to ``size x size`` (bottom / right, as SAM pads)."""
    h, w = x.shape[-2:]
    pad = [(0, 0)] * (x.ndim - 2) + [(0, size - h), (0, size - w)]
    return np.pad(x, pad)


def _random_point(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    i = int(rng.integers(len(xs)))
    return np.array([xs[i], ys[i]], np.float32)


def box_center(box: np.ndarray) -> np.ndarray:
    """Centre (x, y) of an XYXY box; the point prompt of a box in WPS-SAM's point mode."""
    return np.array([(box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0], np.float32)


def build_training_batch(
    samples: Sequence[Dict],
    rng: np.random.Generator,
    prompts: PromptSamplingConfig,
    image_size: int,
) -> List[Dict[str, torch.Tensor]]:
    """Turn generic samples into per-image prompt sets.

    Returns one dict per image with:
        "image": uint8 tensor ``3 x h x w`` (unpadded, as SAM's ``preprocess`` expects),
        "boxes": float ``Nb x 4`` XYXY (possibly jittered) box prompts,
        "box_masks": float ``Nb x S x S`` targets of the box prompts (S = ``image_size``, padded),
        "points": float ``Np x 1 x 2`` (x, y) point prompts,
        "point_masks": float ``Np x S x S`` targets of the point prompts,
        "point_single": float ``Np``, 1 where the point's single-mask output is supervised too
            (a target that is one region), 0 for unions (only the best multimask output).
    Point prompts go to the targets of ``s["point_ok"]`` (default: those that are not unions).
    """
    out = []
    for s in samples:
        masks, boxes, is_union = s["masks"], s["boxes"], s["is_union"]
        h, w = masks.shape[-2:]
        k = len(masks)
        box_ids = rng.permutation(k)[: prompts.max_boxes]
        jittered = boxes[box_ids].copy()
        for j, b in enumerate(jittered):
            if rng.random() < prompts.box_jitter_prob:
                side = np.array([b[2] - b[0], b[3] - b[1]] * 2, np.float32)
                noise = rng.normal(0, prompts.box_jitter_std, 4) * side
                b = b + np.clip(noise, -prompts.box_jitter_max, prompts.box_jitter_max)
            b = np.clip(b, 0, [w, h, w, h])
            if b[2] - b[0] < 1 or b[3] - b[1] < 1:
                b = boxes[box_ids[j]]
            jittered[j] = b
        candidates = np.nonzero(s.get("point_ok", ~is_union))[0]
        point_ids = rng.permutation(candidates)[: prompts.max_points]
        points = np.zeros((len(point_ids), 1, 2), np.float32)
        for j, i in enumerate(point_ids):
            if rng.random() < prompts.center_point_prob:
                points[j, 0] = box_center(boxes[i])
            else:
                points[j, 0] = _random_point(rng, masks[i])
        padded = _pad_to(masks, image_size).astype(np.float32)
        out.append(
            {
                "image": torch.from_numpy(np.ascontiguousarray(s["image"].transpose(2, 0, 1))),
                "boxes": torch.from_numpy(jittered.astype(np.float32)),
                "box_masks": torch.from_numpy(padded[box_ids]),
                "points": torch.from_numpy(points),
                "point_masks": torch.from_numpy(padded[point_ids]),
                "point_single": torch.from_numpy((~is_union[point_ids]).astype(np.float32)),
            }
        )
    return out


def encode_images(sam: Sam, images: Sequence[torch.Tensor]) -> torch.Tensor:
    """SAM image embeddings ``B x C x E x E`` of uint8 ``3 x h x w`` images (normalised, padded)."""
    x = torch.stack([sam.preprocess(img.to(sam.device).float()) for img in images])
    return sam.image_encoder(x)


def prompted_mask_logits(
    sam: Sam,
    image_embedding: torch.Tensor,
    boxes: Optional[torch.Tensor] = None,
    points: Optional[torch.Tensor] = None,
):
    """All four mask outputs of SAM's decoder for box and single-point prompts of one image.

    Args:
        image_embedding: ``1 x C x E x E``.
        boxes: ``Nb x 4`` XYXY in the input frame, or None.
        points: ``Np x 1 x 2`` (x, y) positive points, or None.
    Returns:
        masks: ``(Nb + Np) x 4 x 4E x 4E`` low-res logits (output 0 = single-mask output,
            1..3 = multimask outputs), boxes first.
        iou_pred: ``(Nb + Np) x 4``.
    The decoder runs once on all prompts; every prompt is independent of the others, so this is
    what ``sam.mask_decoder(..., multimask_output=...)`` returns per prompt, before slicing.
    """
    sparse = []
    if boxes is not None and len(boxes):
        sparse.append(sam.prompt_encoder(points=None, boxes=boxes, masks=None)[0])
    if points is not None and len(points):
        labels = torch.ones(points.shape[:2], dtype=torch.int, device=points.device)
        sparse.append(sam.prompt_encoder(points=(points, labels), boxes=None, masks=None)[0])
    sparse = torch.cat(sparse)
    e = sam.prompt_encoder.image_embedding_size
    dense = sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
        len(sparse), -1, e[0], e[1]
    )
    return sam.mask_decoder.predict_masks(
        image_embeddings=image_embedding,
        image_pe=sam.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
    )


def _upsample(logits: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(logits, (size, size), mode="bilinear", align_corners=False)


def _mask_losses(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-mask losses: dice + class-balanced BCE (foreground and background pixels weigh half
    each). ``logits``: N x M x s x s, ``target``: N x s x s soft targets -> N x M losses.

    SAM's own loss (focal + dice) and plain BCE + dice both let the many background pixels of a
    small target dominate a randomly initialised model: it predicts empty masks for hundreds of
    steps before it starts to follow the prompt (measured: about 150 steps of 32 box prompts for
    the mask decoder alone, against about 30 with balanced BCE).
    """
    t = target[:, None].expand_as(logits)
    fg = target.mean((-1, -2)).clamp(0.01, 0.99)[:, None, None, None]
    weight = t * (0.5 / fg) + (1 - t) * (0.5 / (1 - fg))
    bce = (weight * F.binary_cross_entropy_with_logits(logits, t, reduction="none")).mean((-1, -2))
    p = logits.sigmoid()
    dice = 1 - (2 * (p * t).sum((-1, -2)) + 1) / (p.sum((-1, -2)) + t.sum((-1, -2)) + 1)
    return dice + bce


def _mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of ``logits > 0`` with ``target > 0.5``: N x M x S x S, N x S x S -> N x M."""
    pred = logits > 0
    t = target[:, None] > 0.5
    inter = (pred & t).sum((-1, -2)).float()
    union = (pred | t).sum((-1, -2)).float()
    return inter / union.clamp(min=1)


def sam_training_loss(
    sam: Sam,
    batch: List[Dict[str, torch.Tensor]],
    iou_weight: float = 1.0,
) -> Dict[str, torch.Tensor]:
    """Losses of one batch (see :func:`build_training_batch`).

    Masks are supervised at the decoder's low resolution (4x the embedding size): the targets are
    area-downsampled there, which is 16x cheaper than upsampling every logit map to the input
    size and loses only sub-cell boundary detail. The IoU head regresses the low-res IoU.

    Returns a dict with "loss" (the total) and its detached parts "box_mask", "point_mask",
    "iou", and "box_iou" (mean low-res IoU of the box prompts' masks in this batch).
    """
    embeddings = encode_images(sam, [b["image"] for b in batch])
    box_terms, point_terms, iou_terms, box_ious = [], [], [], []
    for i, b in enumerate(batch):
        nb = len(b["boxes"])
        masks, iou_pred = prompted_mask_logits(sam, embeddings[i : i + 1], b["boxes"], b["points"])
        target = torch.cat([b["box_masks"], b["point_masks"]])
        target = F.interpolate(target[:, None], size=masks.shape[-2:], mode="area")[:, 0]
        with torch.no_grad():
            actual_iou = _mask_iou(masks, target)
        if nb:
            box_terms.append(_mask_losses(masks[:nb, :1], target[:nb])[:, 0])
            iou_terms.append(F.mse_loss(iou_pred[:nb, :1], actual_iou[:nb, :1], reduction="none"))
            box_ious.append(actual_iou[:nb, 0])
        if len(masks) > nb:
            losses = _mask_losses(masks[nb:], target[nb:])
            single = b.get("point_single")
            single_term = losses[:, 0] if single is None else single * losses[:, 0]
            point_terms.append(losses[:, 1:].min(dim=1).values + single_term)
            iou_terms.append(F.mse_loss(iou_pred[nb:], actual_iou[nb:], reduction="none"))
    box_loss = torch.cat(box_terms).mean() if box_terms else embeddings.sum() * 0
    point_loss = torch.cat(point_terms).mean() if point_terms else embeddings.sum() * 0
    iou_loss = torch.cat([t.flatten() for t in iou_terms]).mean()
    total = box_loss + point_loss + iou_weight * iou_loss
    return {
        "loss": total,
        "box_mask": box_loss.detach(),
        "point_mask": point_loss.detach(),
        "iou": iou_loss.detach(),
        "box_iou": torch.cat(box_ious).mean() if box_ious else torch.tensor(float("nan")),
    }


def init_sincos_position_embedding_(sam: Sam) -> bool:
    """Fill the image encoder's absolute position embedding with 2D sine-cosine features (as MAE
    initialises it) when it is still all zeros, as ``segment_anything`` leaves it (its ViT is
    meant to be loaded from pre-trained weights). Returns whether it was filled.

    Without it a randomly initialised SAM has no position in its image features (relative
    positions start at zero too): it learns to segment every salient object whatever the prompt,
    and learns to follow the prompt only slowly.
    """
    pos = sam.image_encoder.pos_embed
    if pos is None or bool(pos.detach().abs().sum() > 0):
        return False
    _, gh, gw, dim = pos.shape
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    ys, xs = torch.meshgrid(
        torch.arange(gh, dtype=torch.float32), torch.arange(gw, dtype=torch.float32), indexing="ij"
    )
    feats = []
    for coord in (ys, xs):
        angles = coord[..., None] * omega
        feats += [angles.sin(), angles.cos()]
    table = torch.cat(feats, dim=-1)
    with torch.no_grad():
        pos.zero_()
        pos[0, :, :, : table.shape[-1]] = table
    return True


def _lr_factor(step: int, max_steps: int, warmup: int, final: float = 0.02) -> float:
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, max_steps - warmup)
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def train_tiny_sam(
    sam: Sam,
    max_steps: int,
    batch_size: int = 8,
    seed: int = 0,
    lr: float = 4e-4,
    weight_decay: float = 0.05,
    warmup_steps: int = 100,
    data_cfg: GenericShapesConfig = GenericShapesConfig(),
    prompts: PromptSamplingConfig = PromptSamplingConfig(),
    log_period: int = 50,
    eval_fn: Optional[Callable[[Sam], Dict[str, float]]] = None,
    eval_period: int = 0,
    show_progress: bool = True,
    time_limit_s: float = 0.0,
    sincos_position_init: bool = True,
    easy_data_cfg: Optional[GenericShapesConfig] = None,
    easy_fraction: float = 0.0,
    sample_fn: Optional[Callable[[int, int], Dict]] = None,
    checkpoint_fn: Optional[Callable[[Sam, List[Dict[str, float]]], None]] = None,
    checkpoint_period: int = 0,
) -> List[Dict[str, float]]:
    """Train ``sam`` (all of it) for ``max_steps`` AdamW steps on the generic-shape stream ``seed``.

    Image ``step * batch_size + j`` of the stream is the ``j``-th image of step ``step``, and
    prompts come from a generator seeded with ``seed``: the run is a function of its arguments.
    ``time_limit_s`` > 0 is a safety net on a busy machine: training stops after the first step
    that ends past it (with a warning, since the run then depends on the machine's speed).
    A curriculum: the first ``easy_fraction`` of the steps draw their images with
    ``easy_data_cfg`` (for example fewer, larger, stand-alone shapes), the rest with ``data_cfg``.
    ``sample_fn(seed, index)``, when given, draws the images instead of the generic-shape stream
    (and the curriculum), e.g. ``pretraining_data.generate_pretraining_sample``.
    ``checkpoint_fn(sam, history)`` is called every ``checkpoint_period`` steps and at the end, so
    that a run stopped early keeps its last checkpoint and its curve.
    Returns the logged history (one dict of averaged losses per ``log_period`` steps, with the
    held-out metrics of ``eval_fn`` where they were measured); the last record's "step" is the
    number of steps done.
    """
    if data_cfg.image_size != sam.image_encoder.img_size:
        raise ValueError(
            f"Generic shapes are drawn at {data_cfg.image_size} px but the SAM takes "
            f"{sam.image_encoder.img_size} px inputs; set GenericShapesConfig.image_size to match."
        )
    torch.manual_seed(seed)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7]))
    if sincos_position_init and init_sincos_position_embedding_(sam):
        logger.info("Initialised the image encoder's position embedding with 2D sine-cosines")
    sam.train()
    decay = [p for n, p in sam.named_parameters() if p.ndim >= 2 and "pos" not in n]
    no_decay = [p for n, p in sam.named_parameters() if not (p.ndim >= 2 and "pos" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0}],
        lr=lr,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: _lr_factor(s, max_steps, min(warmup_steps, max_steps))
    )
    history, running = [], {}
    start = time.perf_counter()
    bar = tqdm(range(max_steps), desc="tiny SAM", disable=not show_progress, mininterval=5)
    for step in bar:
        step_cfg = data_cfg
        if easy_data_cfg is not None and step < easy_fraction * max_steps:
            step_cfg = easy_data_cfg
        if sample_fn is not None:
            samples = [sample_fn(seed, step * batch_size + j) for j in range(batch_size)]
        else:
            samples = [
                generate_generic_sample(seed, step * batch_size + j, step_cfg)
                for j in range(batch_size)
            ]
        batch = build_training_batch(samples, rng, prompts, data_cfg.image_size)
        losses = sam_training_loss(sam, batch)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(sam.parameters(), 1.0)
        opt.step()
        sched.step()
        for k, v in losses.items():
            running[k] = running.get(k, 0.0) + float(v.detach())
        if (step + 1) % log_period == 0 or step + 1 == max_steps:
            n = (step % log_period) + 1
            record = {k: v / n for k, v in running.items()}
            record.update(
                step=step + 1, lr=sched.get_last_lr()[0], time=time.perf_counter() - start
            )
            history.append(record)
            running = {}
            bar.set_postfix(loss=f"{record['loss']:.3f}", box_iou=f"{record['box_iou']:.3f}")
            logger.info(
                f"step {step + 1}/{max_steps} loss {record['loss']:.4f} "
                f"(box {record['box_mask']:.4f} point {record['point_mask']:.4f} "
                f"iou {record['iou']:.4f}) train box IoU "
                f"{record['box_iou']:.3f} lr {record['lr']:.2e} {record['time']:.0f}s"
            )
        if (
            eval_fn is not None
            and eval_period
            and (step + 1) % eval_period == 0
            and step + 1 < max_steps
        ):
            sam.eval()
            metrics = eval_fn(sam)
            sam.train()
            logger.info(
                f"step {step + 1}: held-out "
                + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            )
            if history and history[-1]["step"] == step + 1:
                history[-1].update({f"heldout_{k}": v for k, v in metrics.items()})
        if checkpoint_fn is not None and checkpoint_period and (step + 1) % checkpoint_period == 0:
            checkpoint_fn(sam, history)
        if time_limit_s and time.perf_counter() - start > time_limit_s and step + 1 < max_steps:
            logger.warning(
                f"Stopping after {step + 1} of {max_steps} steps: the time limit of "
                f"{time_limit_s:.0f}s is reached. The result depends on the machine's speed; "
                f"rerun with --max-steps {step + 1} (and no time limit) to reproduce the schedule "
                "only approximately, or with more time to finish it."
            )
            if not history or history[-1]["step"] != step + 1:
                n = (step % log_period) + 1
                record = {k: v / n for k, v in running.items()}
                record.update(
                    step=step + 1, lr=sched.get_last_lr()[0], time=time.perf_counter() - start
                )
                history.append(record)
            break
    sam.eval()
    if checkpoint_fn is not None:
        checkpoint_fn(sam, history)
    return history


@torch.no_grad()
def evaluate_prompted_sam(
    sam: Sam,
    seed: int,
    num_images: int,
    data_cfg: GenericShapesConfig = GenericShapesConfig(),
    batch_size: int = 8,
    small_area: int = 32 * 32,
    show_progress: bool = False,
    sample_fn: Optional[Callable[[int, int], Dict]] = None,
) -> Dict[str, float]:
    """Held-out mean IoU of ``sam`` prompted with every target of images ``0..num_images-1`` of
    stream ``seed`` (generic shapes, or ``sample_fn(seed, index)``), decoded exactly as SAM's
    predictor does (logits upsampled to the input size, cropped to the image, thresholded at 0).

    Returns a dict with:
        "box_miou": GT box prompts, ``multimask_output=False``.
        "box_miou_small", "box_miou_large": the same over targets smaller / not smaller than
            ``small_area`` pixels.
        "center_point_miou": box-centre point, ``multimask_output=True``, the output with the
            highest predicted IoU (SAM's predictor default for one point).
        "center_point_single_miou": box-centre point, ``multimask_output=False``.
        "point_miou": a random pixel of the mask (seeded), best-scored multimask output.
        "num_targets": number of prompts of each kind.
        "box_miou_<g>", "point_miou_<g>": box and random-interior-point mIoU over the targets of
            granularity ``g`` (part, group, object, shape, composite), for samples that have a
            "granularity" array (the pre-training stream of tiny SAM v2).
    """
    was_training = sam.training
    sam.eval()
    size = sam.image_encoder.img_size
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 11]))
    ious: Dict[str, List[float]] = {
        k: [] for k in ["box", "box_small", "box_large", "center", "center_single", "point"]
    }
    granularity: List[int] = []
    draw = sample_fn or (lambda seed_, i: generate_generic_sample(seed_, i, data_cfg))
    for start in tqdm(range(0, num_images, batch_size), desc="eval", disable=not show_progress):
        samples = [draw(seed, i) for i in range(start, min(num_images, start + batch_size))]
        images = [
            torch.from_numpy(np.ascontiguousarray(s["image"].transpose(2, 0, 1))) for s in samples
        ]
        embeddings = encode_images(sam, images)
        for i, s in enumerate(samples):
            h, w = s["masks"].shape[-2:]
            target = torch.from_numpy(s["masks"])
            boxes = torch.from_numpy(s["boxes"])
            centers = torch.from_numpy(np.stack([box_center(b) for b in s["boxes"]]))[:, None]
            inner = torch.from_numpy(np.stack([_random_point(rng, m) for m in s["masks"]]))[:, None]
            emb, pe = embeddings[i : i + 1], sam.prompt_encoder.get_dense_pe()

            def decode(points=None, boxes=None, multimask=False):
                labels = None if points is None else torch.ones(points.shape[:2], dtype=torch.int)
                sparse, dense = sam.prompt_encoder(
                    points=None if points is None else (points, labels), boxes=boxes, masks=None
                )
                masks, scores = sam.mask_decoder(emb, pe, sparse, dense, multimask_output=multimask)
                masks = _upsample(masks, size)[..., :h, :w]
                best = scores.argmax(dim=1)
                return masks[torch.arange(len(masks)), best][:, None]

            box_iou = _mask_iou(decode(boxes=boxes), target)[:, 0]
            small = target.sum((-1, -2)) < small_area
            ious["box"] += box_iou.tolist()
            ious["box_small"] += box_iou[small].tolist()
            ious["box_large"] += box_iou[~small].tolist()
            ious["center"] += _mask_iou(decode(points=centers, multimask=True), target)[
                :, 0
            ].tolist()
            ious["center_single"] += _mask_iou(decode(points=centers), target)[:, 0].tolist()
            ious["point"] += _mask_iou(decode(points=inner, multimask=True), target)[:, 0].tolist()
            granularity += list(s.get("granularity", np.full(len(boxes), -1)))
    sam.train(was_training)

    def mean(v):
        return float(np.mean(v)) if len(v) else float("nan")

    per_granularity = {}
    g = np.array(granularity)
    for code, name in enumerate(GRANULARITIES):
        if (g == code).any():
            per_granularity[f"box_miou_{name}"] = mean(np.array(ious["box"])[g == code])
            per_granularity[f"point_miou_{name}"] = mean(np.array(ious["point"])[g == code])
    return {
        **per_granularity,
        "box_miou": mean(ious["box"]),
        "box_miou_small": mean(ious["box_small"]),
        "box_miou_large": mean(ious["box_large"]),
        "center_point_miou": mean(ious["center"]),
        "center_point_single_miou": mean(ious["center_single"]),
        "point_miou": mean(ious["point"]),
        "num_targets": float(len(ious["box"])),
    }


def save_sam_state_dict(sam: Sam, path: str, half: bool = True) -> int:
    """Save ``sam``'s state dict in the official ``sam_vit_*.pth`` layout (floating tensors as
    float16 when ``half``; ``load_state_dict`` casts them back into the fp32 model). Returns the
    file size in bytes."""
    import os

    state = {
        k: (v.detach().half() if half and v.is_floating_point() else v.detach()).cpu().clone()
        for k, v in sam.state_dict().items()
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save(state, path)
    return os.path.getsize(path)
