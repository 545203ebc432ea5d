"""Checks of the sizes in a WPS-SAM config, before any module is built.

Impossible sizes otherwise fail as an ``AssertionError`` inside ``torch.nn.MultiheadAttention`` or
a ``RuntimeError`` inside a tensor constructor, naming no config key. :func:`check_wps_sam_config`
runs in :meth:`WPSSAM.from_config`, so every way of building the model (``build_model``,
``DefaultTrainer``, ``DefaultPredictor``) gets the check.
"""

__all__ = ["check_wps_sam_config"]


def _positive(errors, name, value):
    if int(value) < 1:
        errors.append(f"{name}={value} must be >= 1")


def _divides(errors, name, value, div_name, div):
    if int(div) >= 1 and int(value) % int(div):
        errors.append(f"{name}={value} must be a multiple of {div_name}={div}")


def check_wps_sam_config(cfg) -> None:
    """Raise ``ValueError`` listing every impossible size of ``cfg.MODEL.SAM``/``MODEL.WPS_SAM``.

    Checked: positive sizes; ``MODEL.SAM.IMAGE_SIZE`` a multiple of ``PATCH_SIZE``; transformer
    widths divisible by their head counts (``ENCODER_EMBED_DIM`` / ``ENCODER_NUM_HEADS``,
    ``HIDDEN_DIM`` / ``NHEADS``, SAM's mask decoder: ``PROMPT_EMBED_DIM`` / 8); at least one
    prompter decoder layer; ``SOLVER.IMS_PER_BATCH`` >= 1.
    """
    s, w = cfg.MODEL.SAM, cfg.MODEL.WPS_SAM
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
    for name in ("NUM_PROMPT_TOKENS", "PROMPT_HEAD_HIDDEN_DIM"):
        _positive(errors, f"MODEL.WPS_SAM.{name}", w[name])
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
