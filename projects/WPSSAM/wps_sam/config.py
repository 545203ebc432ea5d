"""The config keys of WPS-SAM and its baselines. They only ADD keys to detectron2's config: the
values of detectron2's own keys that every WPS-SAM model needs (META_ARCHITECTURE, SAM's
PIXEL_MEAN/STD and RGB input, MIN_SIZE_TEST 0) are set by configs/Base-WPS-SAM.yaml.

A config (file or command-line override) that sets a key removed from the project gets a
:class:`RemovedConfigKeyError` naming the key and what replaced it (:data:`REMOVED_KEYS`).
"""

from detectron2.config import CfgNode as CN

__all__ = [
    "REMOVED_KEYS",
    "RemovedConfigKeyError",
    "WPSSAMCfgNode",
    "add_det_sam_config",
    "add_wps_sam_config",
]

# Removed key -> what replaced it.
REMOVED_KEYS = {
    "MODEL.WPS_SAM.POS_IN_MEMORY": "nothing (it was never used; the memory carries no position)",
    "MODEL.WPS_SAM.DENSE_TARGET": (
        "nothing: the dense loss's targets always come from the supervision's weak label "
        "(the former 'weak_label')"
    ),
    "MODEL.WPS_SAM.SELECTION_NMS_THRESHOLD": "nothing: two-stage selection's box NMS IoU is 0.5",
    "MODEL.WPS_SAM.PRE_NORM": "nothing: the prompter is post-norm (DETR, the paper)",
    "MODEL.WPS_SAM.DROPOUT": "nothing: the prompter has no dropout (the former 0.0)",
    "MODEL.WPS_SAM.NUM_PROMPT_TOKENS": (
        "nothing: the tokens per prompt are the teacher's (2, SAM's prompt encoder)"
    ),
    "MODEL.WPS_SAM.PROMPT_SOURCE": (
        "MODEL.META_ARCHITECTURE 'SAMGTPrompted' with MODEL.GT_PROMPTED_SAM.PROMPT 'box' or "
        "'point' (the former 'gt_box' / 'gt_point'; 'prompter' is META_ARCHITECTURE 'WPSSAM')"
    ),
    "MODEL.WPS_SAM.SAVE_FROZEN_SAM": "MODEL.SAM.SAVE_FROZEN_WEIGHTS",
    "MODEL.WPS_SAM.TEST.MASK_THRESHOLD": "MODEL.SAM.MASK_THRESHOLD",
    "MODEL.WPS_SAM.TEST.MASK_UPSAMPLE": "MODEL.SAM.MASK_UPSAMPLE",
    "MODEL.DET_SAM.MASK_THRESHOLD": "MODEL.SAM.MASK_THRESHOLD",
    "MODEL.DET_SAM.SAVE_FROZEN_SAM": "MODEL.SAM.SAVE_FROZEN_WEIGHTS",
}


class RemovedConfigKeyError(KeyError):
    """A config sets a key that the project removed."""

    def __str__(self):  # KeyError would print the message with quotes
        return str(self.args[0])


def _removed_keys_in(node, prefix=""):
    found = []
    for key, value in node.items():
        full = prefix + key
        if full in REMOVED_KEYS:
            found.append(full)
        elif isinstance(value, dict):
            found += _removed_keys_in(value, full + ".")
    return found


def _refuse_removed(keys, source: str) -> None:
    removed = [k for k in keys if k in REMOVED_KEYS]
    if removed:
        raise RemovedConfigKeyError(
            f"{source} set config keys that WPS-SAM no longer has: "
            + "; ".join(f"{k} -> replaced by {REMOVED_KEYS[k]}" for k in removed)
            + ". Remove them (or use their replacement)."
        )


class WPSSAMCfgNode(CN):
    """detectron2's CfgNode whose merges refuse the removed keys with a clear message (instead of
    yacs' bare "Non-existent config key"). :func:`add_wps_sam_config` makes ``cfg`` one, so
    ``cfg.merge_from_file`` / ``merge_from_list`` (tools/train_net.py's) get the check."""

    def merge_from_other_cfg(self, cfg_other):
        _refuse_removed(_removed_keys_in(cfg_other), "The config")
        # detectron2's merge_from_file loads the file as type(self): back to plain CfgNodes, so
        # that yacs' type check sees the same node type on both sides.
        return super().merge_from_other_cfg(CN(cfg_other))

    @classmethod
    def _decode_cfg_value(cls, value):
        # yacs decodes merged sub-trees with type(root): keep them plain CfgNodes.
        return CN._decode_cfg_value(value)

    def merge_from_list(self, cfg_list):
        _refuse_removed(list(cfg_list)[0::2], "The command-line overrides")
        return super().merge_from_list(cfg_list)


def add_wps_sam_config(cfg):
    """Add the keys of WPS-SAM (model, SAM, data and solver extensions) to a detectron2 ``cfg``.

    Only adds keys (configs/Base-WPS-SAM.yaml sets detectron2's own keys for WPS-SAM), and makes
    ``cfg``'s merges refuse the removed keys (:data:`REMOVED_KEYS`) with what replaced them.
    """
    if type(cfg) is CN:
        object.__setattr__(cfg, "__class__", WPSSAMCfgNode)

    # ---------------------------------------------------------------------------------------------
    # The frozen Segment Anything model
    # ---------------------------------------------------------------------------------------------
    cfg.MODEL.SAM = CN()
    # "vit_b", "vit_l", "vit_h" (official architectures) or "custom" (the ENCODER_* keys below).
    cfg.MODEL.SAM.VARIANT = "vit_b"
    # Path of a SAM state dict (e.g. sam_vit_b_01ec64.pth). Empty: random weights (tests only).
    cfg.MODEL.SAM.CHECKPOINT = ""
    # Side of SAM's square input; images are resized so that their longest side has this length.
    cfg.MODEL.SAM.IMAGE_SIZE = 1024
    # ViT patch size; the image embedding is IMAGE_SIZE / PATCH_SIZE on a side.
    cfg.MODEL.SAM.PATCH_SIZE = 16
    # Channels of the image embedding and of the prompt tokens.
    cfg.MODEL.SAM.PROMPT_EMBED_DIM = 256
    # Image-encoder width, used only when VARIANT is "custom".
    cfg.MODEL.SAM.ENCODER_EMBED_DIM = 768
    # Image-encoder depth (transformer blocks), used only when VARIANT is "custom".
    cfg.MODEL.SAM.ENCODER_DEPTH = 12
    # Image-encoder attention heads, used only when VARIANT is "custom".
    cfg.MODEL.SAM.ENCODER_NUM_HEADS = 12
    # Blocks with global attention (the others use windows), used only when VARIANT is "custom".
    cfg.MODEL.SAM.ENCODER_GLOBAL_ATTN_INDEXES = [2, 5, 8, 11]
    # Window size of windowed attention blocks, used only when VARIANT is "custom".
    cfg.MODEL.SAM.ENCODER_WINDOW_SIZE = 14
    # Two-way transformer depth of the mask decoder (2 in every official SAM).
    cfg.MODEL.SAM.DECODER_DEPTH = 2
    # MLP width inside the mask decoder's two-way transformer (2048 in every official SAM).
    cfg.MODEL.SAM.DECODER_MLP_DIM = 2048
    # Autocast of the frozen image encoder: "none" (float32) or "bf16" (bfloat16 autocast on the
    # model's device, CPU or GPU; about 2x faster on CPU, see docs/PERFORMANCE.md).
    cfg.MODEL.SAM.ENCODER_AUTOCAST = "none"
    # Mask-logit threshold of SAM's mask decoder output (SAM's own default is 0.0).
    cfg.MODEL.SAM.MASK_THRESHOLD = 0.0
    # How low-resolution mask logits reach the original image size: "once" (one bilinear resize
    # of the valid low-res crop, same geometry) or "sam" (SAM's postprocess_masks: to the square
    # input size, crop, then to the original size).
    cfg.MODEL.SAM.MASK_UPSAMPLE = "once"
    # Also store SAM's frozen weights in the model's checkpoints (off: they come from CHECKPOINT).
    cfg.MODEL.SAM.SAVE_FROZEN_WEIGHTS = False

    # ---------------------------------------------------------------------------------------------
    # The trainable query prompter, the teacher and the set criterion
    # ---------------------------------------------------------------------------------------------
    cfg.MODEL.WPS_SAM = CN()
    # Number of part classes C (the classifier has C + 1 outputs, the last one is "no part").
    cfg.MODEL.WPS_SAM.NUM_CLASSES = 40
    # Number of part queries S.
    cfg.MODEL.WPS_SAM.NUM_QUERIES = 25
    # Width of the prompter's transformer.
    cfg.MODEL.WPS_SAM.HIDDEN_DIM = 256
    # Attention heads of the prompter's transformer.
    cfg.MODEL.WPS_SAM.NHEADS = 8
    # FFN width of the prompter's transformer.
    cfg.MODEL.WPS_SAM.DIM_FEEDFORWARD = 1024
    # Transformer encoder layers.
    cfg.MODEL.WPS_SAM.ENC_LAYERS = 6
    # Transformer decoder layers.
    cfg.MODEL.WPS_SAM.DEC_LAYERS = 6
    # 3x3 stride-2 convolutions (each + LayerNorm2d + GELU) that shrink the image embedding.
    cfg.MODEL.WPS_SAM.NUM_DOWNSAMPLE_CONVS = 2
    # Residual 3x3 stride-1 conv blocks after the downsampling (more local fusion at one scale).
    cfg.MODEL.WPS_SAM.NUM_FUSION_CONVS = 0
    # Dilation of each fusion block (empty: 1 for all; else one value per block).
    cfg.MODEL.WPS_SAM.FUSION_DILATIONS = []
    # Positional embedding of the prompter's memory: "learned" (zero-initialised), "sine", or
    # "sam" (SAM's frozen Fourier features of the cell centres, the basis of its box prompts).
    cfg.MODEL.WPS_SAM.POS_EMBED = "learned"
    # How a query's prompt is made: "tokens" (the paper: an MLP emits the prompt tokens) or
    # "anchored_box" (each query owns a learned anchor box on a grid, the decoder refines it, and
    # SAM's frozen prompt encoder turns the box into the tokens; needs POS_EMBED "sam").
    cfg.MODEL.WPS_SAM.PROMPT_HEAD = "tokens"
    # Where anchored queries start: "learned" (one learned anchor box per query, on a grid) or
    # "memory" (two-stage: each memory cell proposes a class and a box, the best S proposals after
    # box NMS become the anchors; needs PROMPT_HEAD "anchored_box" and DENSE_CLASS_WEIGHT > 0).
    cfg.MODEL.WPS_SAM.QUERY_SELECTION = "learned"
    # Weight of the L1 loss of the cells' proposed boxes against the weak label's box (box
    # supervision) or point (point supervision: centres only); used by QUERY_SELECTION "memory".
    cfg.MODEL.WPS_SAM.DENSE_BOX_WEIGHT = 5.0
    # Hidden width of the prompt head MLP.
    cfg.MODEL.WPS_SAM.PROMPT_HEAD_HIDDEN_DIM = 512
    # Matching cost weight alpha of the class probability.
    cfg.MODEL.WPS_SAM.CLASS_COST = 10.0
    # Matching cost weight beta of the L2 distance between prompts.
    cfg.MODEL.WPS_SAM.PROMPT_COST = 1.0
    # Loss weight lambda_cls of the cross-entropy.
    cfg.MODEL.WPS_SAM.CLASS_WEIGHT = 5.0
    # Loss weight lambda_reg of the smooth-L1 distillation loss.
    cfg.MODEL.WPS_SAM.PROMPT_WEIGHT = 20.0
    # Normaliser of the distillation loss (also of each auxiliary layer's): "matched" (the
    # authors' code: mean over the matched parts) or "queries" (paper eq. 4 literally: sum over
    # matched queries / S, i.e. M/S times weaker). See docs/FIDELITY.md.
    cfg.MODEL.WPS_SAM.PROMPT_LOSS_NORM = "matched"
    # Add the loss of every earlier decoder layer's prediction (DETR's auxiliary losses; the paper
    # states only the final layer's loss).
    cfg.MODEL.WPS_SAM.DEEP_SUPERVISION = False
    # Cross-entropy weight of the "no part" class (1.0 = plain cross-entropy, as in the paper).
    cfg.MODEL.WPS_SAM.NO_OBJECT_WEIGHT = 1.0
    # Weight of a dense auxiliary loss (0: off, the paper): every cell of the prompter's encoder
    # memory is classified against the weak labels (box: the class of the smallest box holding the
    # cell, else "no part"; point: the cells holding a point only). Off by default.
    cfg.MODEL.WPS_SAM.DENSE_CLASS_WEIGHT = 0.0
    # Weak label the teacher encodes: "box" (part boxes) or "point" (box centres).
    cfg.MODEL.WPS_SAM.SUPERVISION = "box"

    # SAM prompted with the ground-truth parts (META_ARCHITECTURE "SAMGTPrompted": the upper
    # bound of the paper's Table 1, and the SAM pseudo-label writer).
    cfg.MODEL.GT_PROMPTED_SAM = CN()
    # "box" (the part boxes) or "point" (the parts' points, else their box centres).
    cfg.MODEL.GT_PROMPTED_SAM.PROMPT = "box"

    cfg.MODEL.WPS_SAM.TEST = CN()
    # A query is kept if its score exceeds this (see KEEP_RULE for what the score is).
    cfg.MODEL.WPS_SAM.TEST.SCORE_THRESHOLD = 0.0
    # "argmax" (the paper: keep a query whose most probable class is a part; score = that
    # probability) or "part_score" (DETR: score = the best part-class probability, "no part"
    # ignored).
    cfg.MODEL.WPS_SAM.TEST.KEEP_RULE = "argmax"

    # ---------------------------------------------------------------------------------------------
    # Data and solver extensions
    # ---------------------------------------------------------------------------------------------
    # Directory of cached image embeddings (float16 shards, tools/cache_embeddings.py). Empty:
    # run the encoder every time.
    cfg.INPUT.EMBEDDING_CACHE_DIR = ""
    # Adam is the paper's optimizer; "SGD" and "ADAMW" are also accepted.
    cfg.SOLVER.OPTIMIZER = "ADAM"
    # Train for this many epochs over DATASETS.TRAIN; > 0 overrides SOLVER.MAX_ITER (and scales
    # SOLVER.STEPS given as fractions in SOLVER.STEP_FRACTIONS) once the dataset size is known.
    cfg.SOLVER.NUM_EPOCHS = 0
    # LR decay points as fractions of the schedule, used with NUM_EPOCHS (empty: constant LR).
    cfg.SOLVER.STEP_FRACTIONS = []
    # Also report the WPS-SAM authors' exact numbers (their merge, accuracy, row averaging and
    # 1024 frame) beside the paper protocol's; models then output instances.pred_mask_probs.
    cfg.TEST.AUTHORS_METRICS = False

    add_det_sam_config(cfg)


def add_det_sam_config(cfg):
    """Add the keys of the paper's two baselines (Det-SAM, SAM pseudo-labels) to ``cfg``.

    Det-SAM's part detector is configured with detectron2's own keys (MODEL.RPN, MODEL.ROI_HEADS,
    MODEL.RESNETS, MODEL.FPN, ...); only what is new lives here.
    """
    cfg.MODEL.DET_SAM = CN()
    # Meta-architecture of the part detector inside DetSAM (detectron2's Faster R-CNN).
    cfg.MODEL.DET_SAM.DETECTOR_META_ARCHITECTURE = "GeneralizedRCNN"
    # Weights of the detector alone (a detectron2 detector checkpoint, .pth or .pkl, or backbone
    # weights such as ImageNet R-50.pkl). Empty: random init. MODEL.WEIGHTS (a DetSAM checkpoint,
    # "detector.*" keys) is loaded after it and wins where both hold a tensor.
    cfg.MODEL.DET_SAM.DETECTOR_WEIGHTS = ""
    # Detections scoring above this become SAM box prompts.
    cfg.MODEL.DET_SAM.SCORE_THRESHOLD = 0.5
    # Also report the detector's box AP (detectron2's COCOEvaluator, pure-Python path).
    cfg.MODEL.DET_SAM.EVAL_BOX_AP = True

    # The detector backbone over SAM's frozen image encoder (BACKBONE.NAME "build_sam_encoder_
    # backbone"): a ViTDet-style simple feature pyramid over its single-scale embedding.
    cfg.MODEL.SAM_ENCODER_BACKBONE = CN()
    # Pyramid levels built from the stride-PATCH_SIZE embedding, as scale factors (ViTDet: 4, 2, 1,
    # 0.5); a level's stride is PATCH_SIZE / factor.
    cfg.MODEL.SAM_ENCODER_BACKBONE.SCALE_FACTORS = [4.0, 2.0, 1.0, 0.5]
    # Channels of every pyramid level.
    cfg.MODEL.SAM_ENCODER_BACKBONE.OUT_CHANNELS = 256
    # Add a stride-2 max-pooled level on top of the coarsest one (FPN's "p6" for the RPN).
    cfg.MODEL.SAM_ENCODER_BACKBONE.TOP_BLOCK = True
    # Normalisation inside the pyramid's convolutions ("LN": ViTDet's LayerNorm, "" for none).
    cfg.MODEL.SAM_ENCODER_BACKBONE.NORM = "LN"

    # SAM pseudo-labels (the paper's Table 5 paradigm, see tools/generate_pseudo_labels.py).
    cfg.PSEUDO_LABELS = CN()
    # Images per SAM call when writing pseudo-labels.
    cfg.PSEUDO_LABELS.BATCH_SIZE = 8
    # Pixels covered by several part masks: "score" (WPS-SAM's merge rule: the mask with the
    # highest SAM mask logit there wins) or "ignore" (written as 255, left out of the loss).
    cfg.PSEUDO_LABELS.OVERLAP = "score"
