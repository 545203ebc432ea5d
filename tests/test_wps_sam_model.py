"""The WPS-SAM meta-architecture on a tiny random SAM (CPU)."""

import copy
import itertools
import math

import pytest
import torch

import wps_sam  # noqa: F401  isort:skip
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.engine import DefaultPredictor
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from wps_sam import add_wps_sam_config
from wps_sam.modeling import HungarianMatcher, QueryPrompter, SetCriterion, build_sam
from wps_sam.modeling.criterion import IGNORE_LABEL, dense_part_assignment, dense_part_labels
from wps_sam.modeling.prompter import grid_anchor_boxes
from wps_sam.modeling.sam_builder import SamCheckpointError, sam_architecture_from_cfg
from wps_sam.solver import build_wps_sam_optimizer, resolve_epoch_schedule

from tiny_wps_sam import NUM_CLASSES, save_tiny_sam_checkpoint, tiny_cfg


def make_input(seed=0, h=128, w=96, num_parts=2, height=200, width=150):
    g = torch.Generator().manual_seed(seed)
    inst = Instances((h, w))
    xy = torch.rand(num_parts, 2, generator=g) * torch.tensor([w * 0.5, h * 0.5])
    wh = torch.rand(num_parts, 2, generator=g) * torch.tensor([w * 0.4, h * 0.4]) + 8
    inst.gt_boxes = Boxes(torch.cat([xy, xy + wh], dim=1))
    inst.gt_classes = torch.randint(0, NUM_CLASSES, (num_parts,), generator=g)
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
    return {"image": image, "height": height, "width": width, "instances": inst}


@pytest.fixture(scope="module")
def sam_checkpoint(tmp_path_factory):
    """A random tiny SAM saved like an official checkpoint (a plain state dict)."""
    return save_tiny_sam_checkpoint(tmp_path_factory.mktemp("sam"))


def build(sam_checkpoint, **overrides):
    torch.manual_seed(1)
    return build_model(tiny_cfg(**{"MODEL.SAM.CHECKPOINT": sam_checkpoint, **overrides}))


def test_paper_prompter_size():
    cfg = get_cfg()
    add_wps_sam_config(cfg)
    prompter = QueryPrompter(cfg)
    n = sum(p.numel() for p in prompter.parameters())
    assert 12.5e6 < n < 12.9e6  # "about 12.7 M trainable parameters"
    out = prompter(torch.zeros(1, 256, 64, 64))
    assert out["pred_logits"].shape == (1, 25, 41)
    assert out["pred_prompts"].shape == (1, 25, 2, 256)


def test_shapes_frozen_sam_and_outputs(sam_checkpoint):
    model = build(sam_checkpoint)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("prompter.") for n in trainable)
    model.train()
    assert model.prompter.training and not model.sam.training
    with EventStorage():
        losses = model([make_input(0), make_input(1, num_parts=0)])
    assert set(losses) == {"loss_cls", "loss_prompt"}
    assert all(torch.isfinite(v) for v in losses.values())

    model.eval()
    (out,) = model([make_input(2)])
    assert out["sem_seg"].shape == (NUM_CLASSES + 1, 200, 150)
    inst = out["instances"]
    assert inst.image_size == (200, 150)
    assert inst.pred_masks.shape[1:] == (200, 150) and inst.pred_masks.dtype == torch.bool
    assert len(inst.pred_classes) == len(inst.scores) == len(inst.pred_masks)
    assert (inst.pred_classes < NUM_CLASSES).all()
    # Background exactly where no kept mask covers the pixel.
    label_map = out["sem_seg"].argmax(0)
    covered = inst.pred_masks.any(0) if len(inst) else torch.zeros(200, 150, dtype=torch.bool)
    assert torch.equal(label_map == NUM_CLASSES, ~covered)


def test_semantic_merge_rule(sam_checkpoint):
    model = build(sam_checkpoint)
    logits = torch.full((3, 2, 3), -5.0)
    logits[0, 0, :2] = 3.0  # class 1, score 0.9
    logits[1, 0, 1:] = 3.0  # class 2, score 0.5: loses the overlap at (0, 1)
    logits[2, 1, 0] = 1.0  # class 1, score 0.6
    sem = model.semantic_map(logits, torch.tensor([1, 2, 1]), torch.tensor([0.9, 0.5, 0.6]))
    expected = torch.tensor([[1, 1, 2], [1, 3, 3]])
    assert torch.equal(sem.argmax(0), expected)
    assert torch.equal(sem[NUM_CLASSES], torch.tensor([[0.0, 0, 0], [0, 1, 1]]))


def test_precomputed_embedding_gives_identical_results(sam_checkpoint):
    model = build(sam_checkpoint).eval()
    x = make_input(3)
    with torch.no_grad():
        embedding = model.image_embeddings([x])[0]
    cached = {k: v for k, v in x.items() if k != "image"}
    cached["image_embedding"] = embedding
    (a,), (b,) = model([x]), model([cached])
    assert torch.equal(a["sem_seg"], b["sem_seg"])
    assert torch.equal(a["instances"].pred_masks, b["instances"].pred_masks)
    model.train()
    with EventStorage():
        la, lb = model([x]), model([cached])
    assert all(torch.equal(la[k], lb[k]) for k in la)


@pytest.mark.parametrize("supervision", ["box", "point"])
def test_training_distils_teacher_and_keeps_sam_frozen(sam_checkpoint, supervision):
    cfg_over = {"MODEL.WPS_SAM.SUPERVISION": supervision, "SOLVER.BASE_LR": 1e-3}
    model = build(sam_checkpoint, **cfg_over)
    cfg = tiny_cfg(**cfg_over)
    optimizer = build_wps_sam_optimizer(cfg, model)
    opt_params = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert opt_params == {id(p) for p in model.prompter.parameters()}
    sam_before = copy.deepcopy(model.sam.state_dict())
    batch = [make_input(10, num_parts=2), make_input(11, num_parts=3)]
    targets = model.prepare_targets(batch)

    def prompt_gap():
        out = model.prompter(model.image_embeddings(batch))
        indices = model.criterion.matcher(out, targets)
        return sum(
            (out["pred_prompts"][i][s] - t["prompts"][j]).abs().mean().item()
            for i, ((s, j), t) in enumerate(zip(indices, targets))
        )

    model.train()
    gap_before = prompt_gap()
    history = []
    with EventStorage():
        for _ in range(40):
            losses = model(batch)
            loss = sum(losses.values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            history.append(loss.item())
    assert history[-1] < 0.3 * history[0], history
    assert prompt_gap() < 0.5 * gap_before
    for k, v in model.sam.state_dict().items():
        assert torch.equal(v, sam_before[k]), k
    assert not model.sam.training


def test_save_load_round_trip(sam_checkpoint, tmp_path):
    model = build(sam_checkpoint)
    with torch.no_grad():  # make the prompter differ from a fresh one
        for p in model.prompter.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.eval()
    x = make_input(4)
    (before,) = model([x])
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("model_test")
    saved = torch.load(tmp_path / "model_test.pth", weights_only=False)["model"]
    assert saved and not any(k.startswith("sam.") for k in saved)  # SAM is not stored twice
    torch.manual_seed(123)
    other = build_model(tiny_cfg(**{"MODEL.SAM.CHECKPOINT": sam_checkpoint})).eval()
    DetectionCheckpointer(other).load(str(tmp_path / "model_test.pth"))
    (after,) = other([x])
    assert torch.equal(before["sem_seg"], after["sem_seg"])


def test_default_predictor(sam_checkpoint, tmp_path):
    cfg = tiny_cfg(**{"MODEL.SAM.CHECKPOINT": sam_checkpoint})
    predictor = DefaultPredictor(cfg)
    bgr = torch.randint(0, 256, (90, 120, 3), dtype=torch.uint8).numpy()
    out = predictor(bgr)
    assert out["sem_seg"].shape == (NUM_CLASSES + 1, 90, 120)
    assert "instances" in out


GT_BOX = {"MODEL.META_ARCHITECTURE": "SAMGTPrompted"}


def test_gt_prompt_source(sam_checkpoint):
    model = build(sam_checkpoint, **GT_BOX).eval()
    assert not any(True for _ in model.parameters() if _.requires_grad)  # no prompter, nothing
    assert model.state_dict() == {}  # trains; SAM is not saved
    x = make_input(5, num_parts=3)
    (out,) = model([x])
    assert torch.equal(out["instances"].pred_classes, x["instances"].gt_classes)
    assert torch.equal(out["instances"].scores, torch.ones(3))


def test_checkpoint_errors(tmp_path):
    with pytest.raises(SamCheckpointError, match="sam_vit_b_01ec64.pth"):
        build_model(
            tiny_cfg(
                **{
                    "MODEL.SAM.VARIANT": "vit_b",
                    "MODEL.SAM.CHECKPOINT": str(tmp_path / "missing.pth"),
                }
            )
        )
    other = tmp_path / "other.pth"
    torch.save(
        build_sam(
            sam_architecture_from_cfg(tiny_cfg(**{"MODEL.SAM.ENCODER_EMBED_DIM": 48}))
        ).state_dict(),
        other,
    )
    with pytest.raises(SamCheckpointError, match="encoder dim 48.*encoder dim 32"):
        build_model(tiny_cfg(**{"MODEL.SAM.CHECKPOINT": str(other)}))


def brute_force_assignment(cost):
    s, m = cost.shape
    best = None
    if m <= s:
        for rows in itertools.permutations(range(s), m):
            total = float(sum(cost[r, c] for c, r in enumerate(rows)))
            best = total if best is None or total < best else best
    else:
        for cols in itertools.permutations(range(m), s):
            total = float(sum(cost[r, c] for r, c in enumerate(cols)))
            best = total if best is None or total < best else best
    return best


@pytest.mark.parametrize("seed", range(6))
def test_matcher_equals_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    s, m = 4, [0, 1, 3, 4, 5, 6][seed]
    matcher = HungarianMatcher(cost_class=10.0, cost_prompt=1.0)
    outputs = {
        "pred_logits": torch.randn(1, s, 4, generator=g),
        "pred_prompts": torch.randn(1, s, 2, 8, generator=g),
    }
    target = {
        "labels": torch.randint(0, 3, (m,), generator=g),
        "prompts": torch.randn(m, 2, 8, generator=g),
    }
    ((rows, cols),) = matcher(outputs, [target])
    assert len(rows) == len(cols) == min(s, m)
    assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)
    if m == 0:
        return
    cost = matcher.cost_matrix(outputs["pred_logits"][0], outputs["pred_prompts"][0], target)
    prob = outputs["pred_logits"][0].softmax(-1)
    manual = -10 * prob[:, target["labels"]] + torch.cdist(
        outputs["pred_prompts"][0].flatten(1), target["prompts"].flatten(1)
    )
    assert torch.allclose(cost, manual)
    assert cost[rows, cols].sum().item() == pytest.approx(brute_force_assignment(cost), abs=1e-5)


def test_more_parts_than_queries_is_counted(sam_checkpoint):
    model = build(sam_checkpoint).train()  # 5 queries
    with EventStorage() as storage:
        losses = model([make_input(6, num_parts=8), make_input(7, num_parts=1)])
        assert storage.latest()["wps_sam/unmatched_parts"][0] == 3
    assert all(torch.isfinite(v) for v in losses.values())


@pytest.mark.parametrize("norm, divisor", [("matched", 1), ("queries", 3)])
def test_criterion_matches_paper_equation(norm, divisor):
    crit = SetCriterion(
        2, HungarianMatcher(), class_weight=5.0, prompt_weight=20.0, prompt_loss_norm=norm
    )
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 3.0, 0.0]]])
    prompts = torch.zeros(1, 3, 2, 2)
    prompts[0, 2] = 0.5
    target = {"labels": torch.tensor([1]), "prompts": torch.ones(1, 2, 2)}
    losses, ((rows, cols),) = crit({"pred_logits": logits, "pred_prompts": prompts}, [target])
    assert rows.tolist() == [2] and cols.tolist() == [0]
    ce = torch.nn.functional.cross_entropy(logits[0], torch.tensor([2, 2, 1]), reduction="none")
    assert losses["loss_cls"].item() == pytest.approx(5.0 * ce.sum().item() / 3, rel=1e-5)
    # smooth L1 of |0.5 - 1| = 0.5 -> 0.5 * 0.5**2 = 0.125 per value; 1 matched query of 3:
    # the authors' mean over matched parts divides by 1, eq. 4 read literally by S = 3.
    assert losses["loss_prompt"].item() == pytest.approx(20.0 * 0.125 / divisor, rel=1e-5)


def test_matched_prompt_norm_is_the_authors_mean_over_matched_values():
    """Two images, 2 and 3 parts: per image smooth_l1_loss(teacher, student[matched]) (mean over
    the M x T x D values), then the mean over the batch, as the authors' training loop does."""
    torch.manual_seed(0)
    crit = SetCriterion(3, HungarianMatcher(), class_weight=1.0, prompt_weight=1.0)
    outputs = {"pred_logits": torch.randn(2, 5, 4), "pred_prompts": torch.randn(2, 5, 2, 8)}
    targets = [
        {"labels": torch.tensor([0, 2]), "prompts": torch.randn(2, 2, 8)},
        {"labels": torch.tensor([1, 1, 0]), "prompts": torch.randn(3, 2, 8)},
    ]
    losses, indices = crit(outputs, targets)
    expected = 0.0
    for i, (src, tgt) in enumerate(indices):
        order = torch.argsort(tgt)  # the teacher in its own order, the student's matched queries
        expected += torch.nn.functional.smooth_l1_loss(
            targets[i]["prompts"][tgt[order]], outputs["pred_prompts"][i, src[order]]
        ).item()
    assert losses["loss_prompt"].item() == pytest.approx(expected / 2, rel=1e-5)
    # An image without parts adds 0 (the authors' code would give NaN) and still counts.
    targets.append({"labels": torch.zeros(0, dtype=torch.int64), "prompts": torch.zeros(0, 2, 8)})
    outputs = {k: torch.cat([v, v[:1]]) for k, v in outputs.items()}
    losses, _ = crit(outputs, targets)
    assert losses["loss_prompt"].item() == pytest.approx(expected / 3, rel=1e-5)


def test_unknown_prompt_loss_norm_is_refused():
    with pytest.raises(ValueError, match="PROMPT_LOSS_NORM"):
        SetCriterion(2, HungarianMatcher(), prompt_loss_norm="mean")


def assert_main_losses_equal_plain_models(losses, sam_checkpoint, overrides):
    """``losses`` (of a model with an auxiliary loss, on make_input(0) and (1)) hold the same
    loss_cls / loss_prompt as the model built with ``overrides`` alone."""
    plain = build(sam_checkpoint, **overrides)
    plain.train()
    with EventStorage():
        reference = plain([make_input(0), make_input(1)])
    for key in ("loss_cls", "loss_prompt"):
        torch.testing.assert_close(losses[key], reference[key])


def test_deep_supervision_adds_one_matched_loss_per_earlier_decoder_layer(sam_checkpoint):
    model = build(
        sam_checkpoint, **{"MODEL.WPS_SAM.DEEP_SUPERVISION": True, "MODEL.WPS_SAM.DEC_LAYERS": 3}
    )
    dec_layers = len(model.prompter.transformer.decoder_layers)
    model.train()
    with EventStorage():
        losses = model([make_input(0), make_input(1)])
    expected = {"loss_cls", "loss_prompt"} | {
        f"loss_{kind}_{i}" for kind in ("cls", "prompt") for i in range(dec_layers - 1)
    }
    assert set(losses) == expected
    # The final layer's loss is the one without deep supervision (same weights, same inputs).
    assert_main_losses_equal_plain_models(losses, sam_checkpoint, {"MODEL.WPS_SAM.DEC_LAYERS": 3})
    # Inference ignores the auxiliary heads.
    model.eval()
    with torch.no_grad():
        out = model.prompter(torch.zeros(1, 256, 8, 8))
    assert "aux_outputs" not in out


def test_sam_positional_encoding_is_the_prompt_encoders_basis(sam_checkpoint):
    sam_pe = {"MODEL.WPS_SAM.POS_EMBED": "sam", "MODEL.WPS_SAM.HIDDEN_DIM": 256}
    model = build(sam_checkpoint, **sam_pe)
    prompter, pe_layer = model.prompter, model.sam.prompt_encoder.pe_layer
    side = prompter.memory_size
    # The cell (i, j) of the memory carries SAM's encoding of that cell's centre in image pixels.
    size = model.image_size
    centre = torch.tensor([[[(1 + 0.5) * size / side, (0 + 0.5) * size / side]]])
    expected = pe_layer.forward_with_coords(centre, (size, size))[0, 0]
    torch.testing.assert_close(prompter.pos_embed[0, :, 0, 1], expected, rtol=1e-4, atol=1e-4)
    assert not any("pos_embed" in k for k in model.state_dict())  # derived, not saved
    unset = QueryPrompter(tiny_cfg(**sam_pe))
    with pytest.raises(RuntimeError, match="use_sam_position_encoding"):
        unset(torch.zeros(1, 256, 8, 8))
    with pytest.raises(ValueError, match="HIDDEN_DIM"):
        QueryPrompter(tiny_cfg(**{"MODEL.WPS_SAM.POS_EMBED": "sam"}))
    with pytest.raises(ValueError, match="POS_EMBED"):
        QueryPrompter(tiny_cfg(**{"MODEL.WPS_SAM.POS_EMBED": "rope"}))


ANCHORED = {
    "MODEL.WPS_SAM.POS_EMBED": "sam",
    "MODEL.WPS_SAM.HIDDEN_DIM": 256,
    "MODEL.WPS_SAM.PROMPT_HEAD": "anchored_box",
}


@pytest.mark.parametrize("supervision", ["box", "point"])
def test_anchored_box_head_emits_the_teachers_tokens_of_its_boxes(sam_checkpoint, supervision):
    model = build(sam_checkpoint, **ANCHORED, **{"MODEL.WPS_SAM.SUPERVISION": supervision})
    prompter = model.prompter
    num_queries = prompter.num_queries
    # Untrained, every query predicts its own anchor: the cells of a grid over the image.
    anchors = grid_anchor_boxes(num_queries)
    side = math.ceil(math.sqrt(num_queries))
    assert len(set(map(tuple, anchors[:, :2].tolist()))) == num_queries
    assert anchors[:, 2:].eq(1 / side).all()
    outputs = model.run_prompter(torch.randn(2, 256, 8, 8))
    torch.testing.assert_close(outputs["pred_boxes"][0], anchors, atol=1e-4, rtol=0)
    # Its tokens are the teacher's encoding of those boxes (corners, or the centre as a point).
    cx, cy, w, h = (outputs["pred_boxes"][1] * model.image_size).unbind(-1)
    xyxy = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
    torch.testing.assert_close(outputs["pred_prompts"][1], model.teacher(xyxy))
    # The distillation loss reaches the anchors and the box head through SAM's frozen encoder.
    model.train()
    with EventStorage():
        losses = model([make_input(0), make_input(1)])
    losses["loss_prompt"].backward()
    assert prompter.anchor_logits.grad.abs().sum() > 0
    assert prompter.box_head[-1].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.sam.parameters())
    assert not any(k.startswith("sam.") or "pe_layer" in k for k in model.state_dict())
    with pytest.raises(ValueError, match="POS_EMBED"):
        QueryPrompter(tiny_cfg(**{**ANCHORED, "MODEL.WPS_SAM.POS_EMBED": "sine"}))
    with pytest.raises(ValueError, match="PROMPT_HEAD"):
        QueryPrompter(tiny_cfg(**{**ANCHORED, "MODEL.WPS_SAM.PROMPT_HEAD": "points"}))


def test_epoch_schedule():
    cfg = tiny_cfg(**{"SOLVER.NUM_EPOCHS": 150, "SOLVER.IMS_PER_BATCH": 8})
    cfg.SOLVER.STEP_FRACTIONS = [0.5]
    resolve_epoch_schedule(cfg, num_images=16540)
    assert cfg.SOLVER.MAX_ITER == 150 * 2068 and cfg.SOLVER.STEPS == (75 * 2068,)


def test_full_model_gradient_clipping_bounds_the_joint_norm():
    cfg = get_cfg()
    add_wps_sam_config(cfg)
    cfg.SOLVER.OPTIMIZER, cfg.SOLVER.BASE_LR = "SGD", 1.0
    cfg.SOLVER.MOMENTUM, cfg.SOLVER.WEIGHT_DECAY = 0.0, 0.0
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "full_model"
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 0.1
    layers = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    before = [p.detach().clone() for p in layers.parameters()]
    optimizer = build_wps_sam_optimizer(cfg, layers)
    (layers(torch.full((2, 3), 100.0)).sum() * 1000).backward()
    optimizer.step()
    # All gradients were scaled together (in place) to a joint norm of 0.1; SGD at lr 1 moved
    # the parameters by exactly that.
    joint = torch.sqrt(sum((p.grad**2).sum() for p in layers.parameters()))
    assert torch.isclose(joint, torch.tensor(0.1), atol=1e-6)
    step = torch.sqrt(
        sum(((b - p.detach()) ** 2).sum() for b, p in zip(before, layers.parameters()))
    )
    assert torch.isclose(step, torch.tensor(0.1), atol=1e-5)


def test_dense_part_labels_from_boxes_and_points():
    # A 4x4 grid over a 40 px frame: cell centres at 5, 15, 25, 35.
    classes = torch.tensor([0, 1])
    boxes = torch.tensor([[0.0, 0.0, 30.0, 20.0], [10.0, 10.0, 20.0, 40.0]])
    labels = dense_part_labels(classes, 4, 40, NUM_CLASSES, boxes=boxes)
    bg = NUM_CLASSES
    expected = torch.tensor(
        [
            [0, 0, 0, bg],
            [0, 1, 0, bg],  # (y 15, x 15) is in both boxes: the smaller one (class 1) wins
            [bg, 1, bg, bg],
            [bg, 1, bg, bg],
        ]
    )
    assert torch.equal(labels, expected)
    assert torch.equal(
        dense_part_labels(classes[:0], 4, 40, NUM_CLASSES, boxes=boxes[:0]), torch.full((4, 4), bg)
    )
    # A box holding no cell centre labels the cell of its own centre, unless a box covers it.
    tiny = torch.tensor([[31.0, 31.0, 34.0, 34.0], [12.0, 12.0, 14.0, 14.0]])
    labels = dense_part_labels(
        torch.tensor([0, 1, 2, 2]), 4, 40, NUM_CLASSES, boxes=torch.cat([boxes, tiny])
    )
    expected[3, 3] = 2  # the first tiny box; the second lies in cell (1, 1), which box 1 holds
    assert torch.equal(labels, expected)
    # Points only say what is at their cell; every other cell is unknown.
    points = torch.tensor([[5.0, 5.0], [39.0, 21.0]])
    labels = dense_part_labels(classes, 4, 40, NUM_CLASSES, points=points)
    assert labels[0, 0] == 0 and labels[2, 3] == 1
    assert (labels == IGNORE_LABEL).sum() == 14
    with pytest.raises(ValueError, match="boxes or points"):
        dense_part_labels(classes, 4, 40, NUM_CLASSES)


@pytest.mark.parametrize("supervision", ["box", "point"])
def test_dense_auxiliary_loss_trains_the_prompters_encoder(sam_checkpoint, supervision):
    overrides = {"MODEL.WPS_SAM.SUPERVISION": supervision}
    model = build(sam_checkpoint, **overrides, **{"MODEL.WPS_SAM.DENSE_CLASS_WEIGHT": 2.0})
    model.train()
    with EventStorage():
        losses = model([make_input(0), make_input(1)])
    assert set(losses) == {"loss_cls", "loss_prompt", "loss_dense_cls"}
    assert torch.isfinite(losses["loss_dense_cls"]) and losses["loss_dense_cls"] > 0
    losses["loss_dense_cls"].backward()
    prompter = model.prompter
    assert prompter.memory_class_head.weight.grad.abs().sum() > 0
    assert prompter.transformer.encoder_layers[0].linear1.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.sam.parameters())
    # The other losses are those of the model without the dense head (same init, same inputs).
    assert_main_losses_equal_plain_models(losses, sam_checkpoint, overrides)
    model.eval()
    with torch.no_grad():
        assert "memory_logits" not in model.prompter(torch.zeros(1, 256, 8, 8))


def test_dense_targets_under_box_supervision_come_from_the_boxes(sam_checkpoint):
    """The former MODEL.WPS_SAM.DENSE_TARGET is gone: the dense targets are the weak label's."""
    model = build(sam_checkpoint, **{"MODEL.WPS_SAM.DENSE_CLASS_WEIGHT": 2.0})
    inst = make_input(0)["instances"]
    labels = model.targets.dense_targets(inst, None)["dense_labels"]
    side, frame = model.prompter.memory_size, model.image_size
    expected = dense_part_labels(
        inst.gt_classes, side, frame, NUM_CLASSES, boxes=inst.gt_boxes.tensor
    )
    assert torch.equal(labels, expected)
    with pytest.raises(KeyError, match="DENSE_TARGET"):
        build(sam_checkpoint, **{"MODEL.WPS_SAM.DENSE_TARGET": "centre"})


def test_keep_rules(sam_checkpoint):
    model = build(sam_checkpoint)
    # Query 0: "no part" 0.5, best part (class 1) 0.3; query 1: class 2 at 0.7.
    probs = torch.tensor([[[0.1, 0.3, 0.1, 0.5], [0.1, 0.1, 0.7, 0.1]]])
    outputs = {"pred_logits": probs.log(), "pred_prompts": torch.arange(2.0).view(1, 2, 1, 1)}
    tokens, classes, scores = model.select_prompts(outputs, 0)  # the paper's argmax rule
    assert classes.tolist() == [2] and tokens.flatten().tolist() == [1.0]
    model.keep_rule, model.score_threshold = "part_score", 0.2
    tokens, classes, scores = model.select_prompts(outputs, 0)
    assert classes.tolist() == [1, 2]
    torch.testing.assert_close(scores, torch.tensor([0.3, 0.7]))
    model.score_threshold = 0.4
    assert model.select_prompts(outputs, 0)[1].tolist() == [2]
    with pytest.raises(ValueError, match="KEEP_RULE"):
        build(sam_checkpoint, **{"MODEL.WPS_SAM.TEST.KEEP_RULE": "top3"})


def test_fusion_convs_keep_the_memory_size():
    plain = QueryPrompter(num_classes=NUM_CLASSES, embedding_size=16, num_downsample_convs=0)
    fused = QueryPrompter(
        num_classes=NUM_CLASSES, embedding_size=16, num_downsample_convs=0, num_fusion_convs=2
    )
    assert fused.memory_size == plain.memory_size == 16
    extra = sum(p.numel() for p in fused.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra == 2 * (256 * 256 * 9 + 256 + 2 * 256)  # conv weight + bias, LayerNorm2d
    out = fused(torch.randn(2, 256, 16, 16))
    assert out["pred_logits"].shape == (2, 25, NUM_CLASSES + 1)


def test_fusion_dilations():
    prompter = QueryPrompter(
        num_classes=NUM_CLASSES,
        embedding_size=16,
        num_downsample_convs=0,
        num_fusion_convs=3,
        fusion_dilations=(1, 4, 8),
    )
    convs = [m.conv for m in prompter.downsample if hasattr(m, "conv")]
    assert [c.dilation[0] for c in convs] == [1, 4, 8]
    assert [c.padding[0] for c in convs] == [1, 4, 8]
    assert prompter(torch.randn(1, 256, 16, 16))["pred_logits"].shape == (1, 25, NUM_CLASSES + 1)
    for bad in ((1, 2), (1, 0, 2)):
        with pytest.raises(ValueError, match="FUSION_DILATIONS"):
            QueryPrompter(
                num_classes=NUM_CLASSES, num_fusion_convs=3, fusion_dilations=bad, embedding_size=16
            )


TWO_STAGE = {
    **ANCHORED,
    "MODEL.WPS_SAM.DENSE_CLASS_WEIGHT": 2.0,
    "MODEL.WPS_SAM.QUERY_SELECTION": "memory",
    "MODEL.WPS_SAM.NUM_DOWNSAMPLE_CONVS": 0,
    "MODEL.WPS_SAM.ENC_LAYERS": 0,
}


def test_query_selection_needs_anchored_head_and_memory_classes(sam_checkpoint):
    with pytest.raises(ValueError, match="QUERY_SELECTION"):
        build(sam_checkpoint, **{**TWO_STAGE, "MODEL.WPS_SAM.QUERY_SELECTION": "top"})
    with pytest.raises(ValueError, match="DENSE_CLASS_WEIGHT"):
        build(sam_checkpoint, **{**TWO_STAGE, "MODEL.WPS_SAM.DENSE_CLASS_WEIGHT": 0.0})
    with pytest.raises(ValueError, match="anchored_box"):
        build(
            sam_checkpoint,
            **{
                **TWO_STAGE,
                "MODEL.WPS_SAM.PROMPT_HEAD": "tokens",
                "MODEL.WPS_SAM.POS_EMBED": "sine",
            },
        )


def test_select_proposals_sets_overlaps_aside_and_fills_up():
    prompter = QueryPrompter(
        num_classes=NUM_CLASSES,
        num_queries=3,
        embedding_size=4,
        num_downsample_convs=0,
        pos_embed="sam",
        prompt_head="anchored_box",
        memory_class_head=True,
        query_selection="memory",
        selection_nms_threshold=0.5,
    )
    # Cells 0 and 1 propose the same box (1 scores higher), cell 2 another one, cell 3 a third.
    boxes = torch.tensor(
        [[[0.3, 0.3, 0.2, 0.2], [0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2], [0.2, 0.8, 0.1, 0.1]]]
    )
    scores = torch.tensor([[0.8, 0.9, 0.5, 0.1]])
    assert prompter.select_proposals(scores, boxes).tolist() == [[1, 2, 3]]
    # Fewer distinct proposals than queries: the best set-aside one fills up.
    assert prompter.select_proposals(scores[:, :3], boxes[:, :3]).tolist() == [[1, 2, 0]]


@pytest.mark.parametrize("supervision", ["box", "point"])
def test_two_stage_queries_start_at_the_selected_cell_proposals(sam_checkpoint, supervision):
    model = build(sam_checkpoint, **{**TWO_STAGE, "MODEL.WPS_SAM.SUPERVISION": supervision})
    prompter = model.prompter
    embedding = torch.randn(2, 256, 8, 8)
    model.eval()
    with torch.no_grad():
        out = prompter(embedding)
        memory = prompter.transformer.encode(prompter.downsample(embedding), prompter.pos_embed)
        proposals = prompter.memory_proposals(memory)
    index = prompter.select_proposals(proposals["scores"], proposals["boxes"])
    assert index.shape == (2, prompter.num_queries)
    assert all(len(set(row.tolist())) == prompter.num_queries for row in index)
    # Untrained, the box heads predict no correction: each query's box is its cell's proposal,
    # and each cell proposes a box two cells wide centred on itself.
    expected = proposals["boxes"].gather(1, index[:, :, None].expand(-1, -1, 4))
    torch.testing.assert_close(out["pred_boxes"], expected, atol=1e-4, rtol=0)
    side = prompter.memory_size
    centres = grid_anchor_boxes(side * side)[:, :2]
    torch.testing.assert_close(proposals["boxes"][0, :, :2], centres, atol=1e-4, rtol=0)
    torch.testing.assert_close(
        proposals["boxes"][0, :, 2:], torch.full((side * side, 2), 2.0 / side), atol=1e-4, rtol=0
    )

    # Training: both dense losses, and the box loss reaches the cells' box head, not SAM.
    model.train()
    with EventStorage():
        losses = model([make_input(0), make_input(1)])
    assert {"loss_dense_cls", "loss_dense_box"} <= set(losses)
    assert torch.isfinite(losses["loss_dense_box"]) and losses["loss_dense_box"] > 0
    losses["loss_dense_box"].backward()
    assert prompter.memory_box_head[-1].weight.grad.abs().sum() > 0  # (zero-initialised)
    assert all(p.grad is None for p in model.sam.parameters())


@pytest.mark.parametrize("supervision", ["box", "point"])
def test_dense_box_targets_come_from_the_weak_labels(sam_checkpoint, supervision):
    model = build(sam_checkpoint, **{**TWO_STAGE, "MODEL.WPS_SAM.SUPERVISION": supervision})
    inst = make_input(3, num_parts=3)["instances"]
    targets = model.targets.dense_targets(inst, None)
    side, frame = model.prompter.memory_size, model.image_size
    labels, index = dense_part_assignment(
        inst.gt_classes,
        side,
        frame,
        NUM_CLASSES,
        **(
            {"boxes": inst.gt_boxes.tensor}
            if supervision == "box"
            else {"points": inst.gt_boxes.get_centers()}
        ),
    )
    assert torch.equal(targets["dense_labels"], labels)
    found = index >= 0
    assert found.any()
    assert torch.equal(targets["dense_box_weights"].sum(-1) > 0, found)
    xyxy = inst.gt_boxes.tensor / frame
    cxcywh = torch.cat([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], dim=1)
    got = targets["dense_boxes"][found]
    want = cxcywh[index[found]]
    if supervision == "box":
        torch.testing.assert_close(got, want)
        assert (targets["dense_box_weights"][found] == 1).all()
    else:  # only the point (the box centre) is known
        torch.testing.assert_close(got[:, :2], want[:, :2])
        assert targets["dense_box_weights"][found].tolist() == [[1.0, 1.0, 0.0, 0.0]] * len(got)
    # Each labelled cell's index names a part of its own class.
    assert torch.equal(inst.gt_classes[index[found]], labels[found])


def test_authors_metrics_make_the_model_output_mask_probabilities(sam_checkpoint):
    x = make_input(3)
    plain = build(sam_checkpoint, **GT_BOX).eval()
    model = build(sam_checkpoint, **GT_BOX, **{"TEST.AUTHORS_METRICS": True}).eval()
    with torch.no_grad():
        inst_plain = plain([x])[0]["instances"]
        inst = model([x])[0]["instances"]
    assert not inst_plain.has("pred_mask_probs")
    probs = inst.pred_mask_probs.float()
    assert probs.shape == inst.pred_masks.shape == (2, 200, 150)
    assert probs.min() >= 0 and probs.max() <= 1
    # Away from the 0.5 boundary (float16), probability > 0.5 is the mask.
    sure = (probs - 0.5).abs() > 1e-2
    assert torch.equal((probs > 0.5)[sure], inst.pred_masks[sure])
