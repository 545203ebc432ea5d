"""Both evaluators on tiny predictions whose answers were computed by hand (see comments)."""

import wps_sam  # noqa: F401  isort:skip  (compatibility layer before detectron2)
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Instances
from PIL import Image

from wps_sam.evaluation import (
    PaperProtocolEvaluator,
    PartSemSegEvaluator,
    build_wps_sam_evaluators,
    row_averaged_binary_iou,
)

# Two part classes (0 "head", 1 "tail"), background = 2, ignore = 255.
GT1 = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2], [2, 2, 255, 255]], dtype=np.uint8)
PRED1 = np.array([[0, 0, 0, 1], [0, 0, 2, 1], [2, 2, 2, 2], [2, 0, 0, 2]])
GT2 = np.array([[0, 0, 2, 2], [2, 2, 2, 2]], dtype=np.uint8)
PRED2 = np.array([[2, 2, 2, 2], [2, 2, 2, 1]])

NAME = "evaluator_fixture"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluators")
    dicts = []
    for i, gt in enumerate([GT1, GT2]):
        label = str(root / f"img{i}.png")
        Image.fromarray(gt).save(label)
        h, w = gt.shape
        dicts.append(
            {
                "file_name": f"img{i}.jpg",
                "image_id": i,
                "height": h,
                "width": w,
                "sem_seg_file_name": label,
            }
        )
    if NAME not in DatasetCatalog.list():
        DatasetCatalog.register(NAME, lambda: dicts)
        MetadataCatalog.get(NAME).set(
            stuff_classes=["head", "tail", "background"],
            thing_classes=["head", "tail"],
            ignore_label=255,
            background_id=2,
            evaluator_type="sem_seg",
        )
    return dicts


def _scores(pred, num_classes=3):
    """One-hot (C+1) x H x W scores whose argmax is ``pred``."""
    return torch.nn.functional.one_hot(torch.as_tensor(pred), num_classes).permute(2, 0, 1).float()


def _instances(masks_and_classes, shape):
    inst = Instances(shape)
    inst.pred_masks = torch.stack(
        [torch.as_tensor(m, dtype=torch.bool) for m, _ in masks_and_classes]
    )
    inst.pred_classes = torch.tensor([c for _, c in masks_and_classes])
    inst.scores = torch.ones(len(masks_and_classes))
    return inst


def _run(evaluator, dicts, outputs):
    evaluator.reset()
    for d, out in zip(dicts, outputs):
        inp = {k: d[k] for k in ("file_name", "image_id", "height", "width")}
        evaluator.process([inp], [out])
    return evaluator.evaluate()


def test_part_sem_seg_evaluator_hand_computed(dataset):
    res = _run(
        PartSemSegEvaluator(NAME, distributed=False),
        dataset,
        [{"sem_seg": _scores(PRED1)}, {"sem_seg": _scores(PRED2)}],
    )["sem_seg"]
    # Pixels with GT 255 are excluded. Per class (TP, GT pixels, predicted pixels):
    # head (4, 6, 6): IoU 4/8, ACC 4/6; tail (2, 4, 3): IoU 2/5, ACC 2/4;
    # background (10, 12, 13): IoU 10/15, ACC 10/12.
    iou = {"head": 0.5, "tail": 0.4, "background": 2 / 3}
    acc = {"head": 4 / 6, "tail": 0.5, "background": 10 / 12}
    for name in iou:
        assert res[f"IoU-{name}"] == pytest.approx(100 * iou[name])
        assert res[f"ACC-{name}"] == pytest.approx(100 * acc[name])
    assert res["mIoU"] == pytest.approx(100 * (0.5 + 0.4 + 2 / 3) / 3)
    assert res["mACC"] == pytest.approx(100 * (4 / 6 + 0.5 + 10 / 12) / 3)
    assert res["pACC"] == pytest.approx(100 * 16 / 22)
    assert res["fwIoU"] == pytest.approx(100 * (0.5 * 6 + 0.4 * 4 + 2 / 3 * 12) / 22)
    # Background excluded.
    assert res["mIoU-parts"] == pytest.approx(100 * (0.5 + 0.4) / 2)
    assert res["mACC-parts"] == pytest.approx(100 * (4 / 6 + 0.5) / 2)


def test_paper_protocol_from_sem_seg_hand_computed(dataset):
    res = _run(
        PaperProtocolEvaluator(
            NAME, distributed=False, prediction_source="sem_seg", report_row_averaged=True
        ),
        dataset,
        [{"sem_seg": _scores(PRED1)}, {"sem_seg": _scores(PRED2)}],
    )["paper_protocol"]
    # Entries: (img1, head): P = 6 px (the ignore pixel predicted head is removed), G = 4,
    # inter 4 -> IoU 4/6, ACC 1. (img1, tail): P 2, G 4, inter 2 -> IoU 1/2, ACC 1/2.
    # (img2, head): nothing predicted -> 0, 0. (img2) tail is predicted but not in the GT: no entry.
    assert res["num_entries"] == 3
    assert res["mIoU"] == pytest.approx(100 * (4 / 6 + 0.5 + 0) / 3)
    assert res["mACC"] == pytest.approx(100 * (1 + 0.5 + 0) / 3)
    assert res["IoU-head"] == pytest.approx(100 * (4 / 6 + 0) / 2)
    assert res["IoU-tail"] == pytest.approx(100 * 0.5)
    assert "IoU-background" not in res
    # The authors' row averaging (empty rows score 1):
    # (img1, head): rows 2/3, 1, 1, 0 -> 2/3; (img1, tail): 1/2, 1/2, 1, 1 -> 3/4;
    # (img2, head): rows 0, 1 -> 1/2. Mean 23/36, far above the correct 7/18.
    assert res["mIoU-row-averaged"] == pytest.approx(100 * (2 / 3 + 3 / 4 + 1 / 2) / 3)


def test_paper_protocol_unions_instance_masks(dataset):
    head_a = GT1 == 0
    head_b = GT1 == 255  # covers only ignore pixels: removed
    tail = np.zeros((4, 4), bool)
    tail[:2] = True
    img2_tail = np.zeros((2, 4), bool)
    img2_tail[0, 0] = True
    outputs = [
        {
            "sem_seg": _scores(PRED1),
            "instances": _instances([(head_a, 0), (head_b, 0), (tail, 1)], (4, 4)),
        },
        {"sem_seg": _scores(PRED2), "instances": _instances([(img2_tail, 1)], (2, 4))},
    ]
    res = _run(PaperProtocolEvaluator(NAME, distributed=False), dataset, outputs)["paper_protocol"]
    # (img1, head): union of both head masks minus ignore = G exactly -> 1. (img1, tail): 8 px
    # predicted, 4 in G -> 1/2, ACC 1. (img2, head): no head instance -> 0.
    assert res["mIoU"] == pytest.approx(100 * (1 + 0.5 + 0) / 3)
    assert res["mACC"] == pytest.approx(100 * (1 + 1 + 0) / 3)


def test_row_averaging_scores_an_empty_prediction_about_090():
    gt = np.zeros((10, 10), bool)
    gt[4, 2:8] = True  # a part on one row out of ten
    empty = np.zeros_like(gt)
    assert row_averaged_binary_iou(empty, gt) == pytest.approx(0.9)


def test_build_wps_sam_evaluators_reports_both(dataset):
    evaluator = build_wps_sam_evaluators(NAME, distributed=False)
    res = _run(evaluator, dataset, [{"sem_seg": _scores(PRED1)}, {"sem_seg": _scores(PRED2)}])
    assert set(res) == {"sem_seg", "paper_protocol"}
    # No instances in the outputs: the paper protocol falls back to the argmax.
    assert res["paper_protocol"]["mIoU"] == pytest.approx(100 * (4 / 6 + 0.5) / 3)


def _prob_instances(probs_and_classes, shape):
    """Instances whose pred_masks are the probabilities thresholded at 0.5 (SAM's logit 0)."""
    inst = Instances(shape)
    probs = torch.stack([torch.as_tensor(p, dtype=torch.float32) for p, _ in probs_and_classes])
    inst.pred_mask_probs = probs.half()
    inst.pred_masks = probs > 0.5
    inst.pred_classes = torch.tensor([c for _, c in probs_and_classes])
    inst.scores = torch.ones(len(probs_and_classes))
    return inst


def _authors_case_img1():
    head_a = np.zeros((4, 4))
    head_a[:2] = 0.3  # head and tail rows, probability 0.3: below 0.5 alone
    head_b = np.zeros((4, 4))
    head_b[:2, :2] = 0.3  # the head only
    tail = np.zeros((4, 4))
    tail[:, 3] = 0.9  # the last column, ignore pixel (3, 3) included
    return _prob_instances([(head_a, 0), (head_b, 0), (tail, 1)], (4, 4))


@pytest.mark.parametrize("img2_has_tail", [False, True])
def test_authors_metrics_hand_computed(dataset, img2_has_tail):
    img2 = np.zeros((2, 4))
    img2[0, 0] = 0.9
    outputs = [
        {"sem_seg": _scores(PRED1), "instances": _authors_case_img1()},
        {
            "sem_seg": _scores(PRED2),
            "instances": (
                _prob_instances([(img2, 1)], (2, 4))
                if img2_has_tail
                else _prob_instances([(img2, 1)], (2, 4))[:0]
            ),
        },
    ]
    evaluator = PaperProtocolEvaluator(
        NAME, distributed=False, authors_metrics=True, authors_frame_size=0
    )
    res = _run(evaluator, dataset, outputs)["paper_protocol"]
    # Ours: no single head mask exceeds 0.5, so the OR of the thresholded masks is empty: head 0.
    # Tail: P = column 3 without the ignore pixel = 3 px, G = 4 px, inter 2 -> IoU 2/5, ACC 1/2.
    # (img2, head): 0 either way.
    assert res["mIoU"] == pytest.approx(100 * (0 + 2 / 5 + 0) / 3)
    # The authors': the two 0.3 head masks sum to 0.6 on the head and mark it exactly (a pixel
    # set no single mask marks): every row scores 1 (rows 2-3 are empty in both) -> IoU 1, ACC 1.
    # Tail, per row (ignore counts as background): rows 0-1: P {3}, G {2, 3} -> IoU 1/2, ACC 3/4;
    # rows 2-3: P {3}, G {} -> IoU 0, ACC 3/4 (true negatives count) -> IoU 1/4, ACC 3/4.
    # Image 2: no kept mask at all -> one entry 0 (a "null image"); with a tail mask only, its
    # head entry scores 0. Either way three entries.
    assert res["num_entries-authors"] == 3
    assert res["null_images-authors"] == (0 if img2_has_tail else 1)
    assert res["mIoU-authors"] == pytest.approx(100 * (1 + 1 / 4 + 0) / 3)
    assert res["mACC-authors"] == pytest.approx(100 * (1 + 3 / 4 + 0) / 3)


def test_authors_frame_resizes_longest_side_and_centres():
    from wps_sam.evaluation import authors_frame, row_averaged_pixel_accuracy

    label = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    framed = authors_frame(label, 8, "nearest")
    assert framed.shape == (8, 8)
    # 2 x 4 -> 4 x 8 (x2, nearest), centred: rows 2-5 hold the image, rows 0-1 and 6-7 are 0.
    assert (framed[:2] == 0).all() and (framed[6:] == 0).all()
    np.testing.assert_array_equal(framed[2], np.repeat(label[0], 2))
    np.testing.assert_array_equal(framed[5], np.repeat(label[1], 2))
    probs = authors_frame(np.ones((3, 2, 4), np.float32), 8, "bilinear")
    assert probs.shape == (3, 8, 8) and probs[:, 2:6].min() == pytest.approx(1.0)
    # Pixel accuracy counts true negatives: a 1-pixel miss in a 2 x 4 image -> rows 1, 3/4.
    gt = np.zeros((2, 4), bool)
    gt[1, 0] = True
    assert row_averaged_pixel_accuracy(np.zeros_like(gt), gt) == pytest.approx((1 + 3 / 4) / 2)


def test_authors_metrics_in_a_padded_frame_score_an_exact_prediction_100(dataset):
    """An 8 x 8 frame (x2, like a 500 px image in SAM's 1024 frame): the bilinear upscale of the
    probabilities keeps every pixel, and the padding (background, probability 0) scores 1."""
    outputs = []
    for d in dataset:
        gt = np.array(Image.open(d["sem_seg_file_name"]))
        masks = [((gt == c).astype(np.float32), c) for c in (0, 1) if (gt == c).any()]
        labels = np.where(gt == 255, 2, gt).astype(np.int64)
        outputs.append({"sem_seg": _scores(labels), "instances": _prob_instances(masks, gt.shape)})
    evaluator = PaperProtocolEvaluator(
        NAME, distributed=False, authors_metrics=True, authors_frame_size=8
    )
    res = _run(evaluator, dataset, outputs)["paper_protocol"]
    assert res["mIoU-authors"] == pytest.approx(100.0)
    assert res["mACC-authors"] == pytest.approx(100.0)
    assert res["mIoU"] == pytest.approx(100.0)
