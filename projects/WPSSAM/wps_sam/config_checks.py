"""Every check of a config, for every meta-architecture, before any module is built.

Impossible sizes otherwise fail as an ``AssertionError`` inside ``torch.nn.MultiheadAttention`` or
a ``RuntimeError`` inside a tensor constructor, naming no config key; a misspelt choice would fall
through to some default branch. Each meta-architecture's ``from_config`` runs its check
(:func:`check_wps_sam_config`, :func:`check_gt_prompted_sam_config`, :func:`check_det_sam_config`),
so every way of building the model (``build_model``, ``DefaultTrainer``, ``DefaultPredictor``)
gets it.
"""

from .modeling.sam_builder import SAM_PIXEL_MEAN, SAM_PIXEL_STD

__all__ = [
    "check_det_sam_config",
    "check_gt_prompted_sam_config",
    "check_sam_config",
    "check_wps_sam_config",
]

ENCODER_AUTOCASTS = ("none", "bf16")
MASK_UPSAMPLES = ("once", "sam")
KEEP_RULES = ("argmax", "part_score")
SUPERVISIONS = ("box", "point")
PROMPT_LOSS_NORMS = ("matched", "queries")


def _choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, not {value!r}")


def _check_sam_input(cfg, who: str) -> None:
    """The model feeds SAM its own input: RGB with SAM's pixel mean/std (sam_builder's)."""
    mean, std = list(SAM_PIXEL_MEAN), list(SAM_PIXEL_STD)
    if (
        cfg.INPUT.FORMAT != "RGB"
        or [float(v) for v in cfg.MODEL.PIXEL_MEAN] != mean
        or [float(v) for v in cfg.MODEL.PIXEL_STD] != std
    ):
        raise ValueError(
            f"{who} needs SAM's input: INPUT.FORMAT 'RGB', MODEL.PIXEL_MEAN {mean}, "
            f"MODEL.PIXEL_STD {std} (configs/Base-WPS-SAM.yaml sets them); got "
            f"{cfg.INPUT.FORMAT!r}, {list(cfg.MODEL.PIXEL_MEAN)}, {list(cfg.MODEL.PIXEL_STD)}."
        )


def check_sam_config(cfg) -> None:
    """The frozen foundation's choices (``MODEL.SAM``)."""
    s = cfg.MODEL.SAM
    _choice("MODEL.SAM.ENCODER_AUTOCAST", s.ENCODER_AUTOCAST, ENCODER_AUTOCASTS)
    _choice("MODEL.SAM.MASK_UPSAMPLE", s.MASK_UPSAMPLE, MASK_UPSAMPLES)


def check_gt_prompted_sam_config(cfg) -> None:
    """``SAMGTPrompted``: SAM's sizes and choices, the prompt kind, SAM's input."""
    check_sam_config(cfg)
    _choice("MODEL.GT_PROMPTED_SAM.PROMPT", cfg.MODEL.GT_PROMPTED_SAM.PROMPT, SUPERVISIONS)
    _check_sam_input(cfg, "SAMGTPrompted")


def check_det_sam_config(cfg) -> None:
    """``DetSAM``: SAM's choices, the detector's classes and input."""
    check_sam_config(cfg)
    _choice("INPUT.FORMAT (Det-SAM)", cfg.INPUT.FORMAT, ("RGB", "BGR"))
    detector_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    if detector_classes != cfg.MODEL.WPS_SAM.NUM_CLASSES:
        raise ValueError(
            f"MODEL.ROI_HEADS.NUM_CLASSES={detector_classes} (the part detector's classes) "
            f"differs from MODEL.WPS_SAM.NUM_CLASSES={cfg.MODEL.WPS_SAM.NUM_CLASSES} (the "
            "dataset's part classes): set both to the number of part classes."
        )
    if cfg.MODEL.BACKBONE.NAME == "build_sam_encoder_backbone":
        _check_sam_input(cfg, "The SAM-encoder backbone")


def _positive(errors, name, value):
    if int(value) < 1:
        errors.append(f"{name}={value} must be >= 1")


def _divides(errors, name, value, div_name, div):
    if int(div) >= 1 and int(value) % int(div):
        errors.append(f"{name}={value} must be a multiple of {div_name}={div}")


def check_wps_sam_config(cfg) -> None:
    """Raise ``ValueError`` on a bad choice of ``MODEL.SAM``/``MODEL.WPS_SAM`` (supervision, keep
    rule, loss normaliser, SAM's autocast and upsampling), on WPS-SAM inputs that are not SAM's,
    and listing every impossible size.

    Sizes checked: positive sizes; ``MODEL.SAM.IMAGE_SIZE`` a multiple of ``PATCH_SIZE``;
    transformer widths divisible by their head counts (``ENCODER_EMBED_DIM`` /
    ``ENCODER_NUM_HEADS``, ``HIDDEN_DIM`` / ``NHEADS``, SAM's mask decoder: ``PROMPT_EMBED_DIM`` /
    8); at least one prompter decoder layer; ``SOLVER.IMS_PER_BATCH`` >= 1. The prompter's own
    layout choices (``POS_EMBED``, ``PROMPT_HEAD``, ``QUERY_SELECTION``, ``FUSION_DILATIONS``) are
    checked by ``QueryPrompter``, which is also built without a config.
    """
    s, w = cfg.MODEL.SAM, cfg.MODEL.WPS_SAM
    check_sam_config(cfg)
    _choice("MODEL.WPS_SAM.SUPERVISION", w.SUPERVISION, SUPERVISIONS)
    _choice("MODEL.WPS_SAM.TEST.KEEP_RULE", w.TEST.KEEP_RULE, KEEP_RULES)
    _choice("MODEL.WPS_SAM.PROMPT_LOSS_NORM", w.PROMPT_LOSS_NORM, PROMPT_LOSS_NORMS)
    _check_sam_input(cfg, "WPS-SAM")
    errors = []
    for name in ("IMAGE_SIZE", "PATCH_SIZE", "PROMPT_EMBED_DIM", "DECODER_MLP_DIM"):
        _positive(errors, f"MODEL.SAM.{name}", s[name])
    if s.VARIANT == "custom":
        for name in ("ENCODER_EMBED_DIM", "ENCODER_DEPTH", "ENCODER_NUM_HEADS", "DECODER_DEPTH"):
            _positive(errors, f"MODEL.SAM.{name}", s[name])
        _positive(errors, "MODEL.SAM.ENCODER_WINDOW_SIZE", s.ENCODER_WINDOW_SIZE)
        _divides(
            errors,
            "MODEL.SAM.ENCODER_EMBED_DIM",
            s.ENCODER_EMBED_DIM,
            "MODEL.SAM.ENCODER_NUM_HEADS",
            s.ENCODER_NUM_HEADS,
        )
    _divides(errors, "MODEL.SAM.IMAGE_SIZE", s.IMAGE_SIZE, "MODEL.SAM.PATCH_SIZE", s.PATCH_SIZE)
    _divides(errors, "MODEL.SAM.PROMPT_EMBED_DIM", s.PROMPT_EMBED_DIM, "SAM's decoder heads", 8)
    for name in ("NUM_QUERIES", "HIDDEN_DIM", "NHEADS", "DIM_FEEDFORWARD", "DEC_LAYERS"):
        _positive(errors, f"MODEL.WPS_SAM.{name}", w[name])
    _positive(errors, "MODEL.WPS_SAM.PROMPT_HEAD_HIDDEN_DIM", w.PROMPT_HEAD_HIDDEN_DIM)
    if int(w.NUM_CLASSES) < 1:
        errors.append(
            f"MODEL.WPS_SAM.NUM_CLASSES={w.NUM_CLASSES} must be >= 1 (0 is filled in from the "
            "datasets only by the tools' config loading, wps_sam.cli_config.load_wps_sam_cfg)"
        )
    if int(w.ENC_LAYERS) < 0 or int(w.NUM_DOWNSAMPLE_CONVS) < 0 or int(w.NUM_FUSION_CONVS) < 0:
        errors.append(
            "MODEL.WPS_SAM.ENC_LAYERS, NUM_DOWNSAMPLE_CONVS and NUM_FUSION_CONVS must be >= 0, got "
            f"{w.ENC_LAYERS}, {w.NUM_DOWNSAMPLE_CONVS}, {w.NUM_FUSION_CONVS}"
        )
    _divides(errors, "MODEL.WPS_SAM.HIDDEN_DIM", w.HIDDEN_DIM, "MODEL.WPS_SAM.NHEADS", w.NHEADS)
    _positive(errors, "SOLVER.IMS_PER_BATCH", cfg.SOLVER.IMS_PER_BATCH)
    if errors:
        raise ValueError(
            "Impossible sizes in the config: " + "; ".join(errors) + ". Fix them in the config "
            "file or with command-line overrides (see projects/WPSSAM/wps_sam/config.py)."
        )
