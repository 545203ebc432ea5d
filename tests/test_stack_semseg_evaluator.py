"""detectron2's ``SemSegEvaluator`` computes known values on this stack (NumPy aliases restored).

Two 2 x 4 label maps are written as PNGs and registered like the project's part datasets
(``stuff_classes`` = parts + ["background"], ``ignore_label`` = 255). The prediction is fixed, so
mIoU / mACC / pACC / fwIoU are computed by hand below. The case covers a pixel ignored in the
ground truth (whose prediction must not count), a class predicted but absent from the ground truth,
and a class absent from both.
"""

import uuid

import numpy as np
import pytest
import torch
from PIL import Image

import wps_sam  # noqa: F401  isort:skip  (restores np.int / np.float used by SemSegEvaluator)
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import SemSegEvaluator

# ids:           0       1       2       3         4
STUFF_CLASSES = ["head", "body", "tail", "leg", "background"]
IGNORE = 255

# Ground truth (G) and prediction (P) per image; 255 in G is ignored.
GT_A = [[0, 0, 1, 1], [4, 4, 4, IGNORE]]
PRED_A = [[0, 1, 1, 1], [4, 4, 2, 0]]
GT_B = [[1, 1, 1, 4], [4, 4, 4, 4]]
PRED_B = [[1, 1, 0, 4], [4, 4, 4, 4]]

# Hand computation. The ignored pixel of A (predicted "head") is dropped: 15 valid pixels.
# (gt -> pred) pairs:  A: 0->0, 0->1, 1->1, 1->1, 4->4, 4->4, 4->2
#                      B: 1->1, 1->1, 1->0, 4->4, 4->4, 4->4, 4->4, 4->4
#   class       GT px  pred px  TP   union = GT + pred - TP   IoU        ACC = TP / GT
#   head  (0)     2      2       1        3                     1/3        1/2
#   body  (1)     5      5       4        6                     4/6 = 2/3  4/5
#   tail  (2)     0      1       0        1                     (0)        -  not in GT
#   leg   (3)     0      0       0        0                     -          -  absent everywhere
#   bg    (4)     8      7       7        8                     7/8        7/8
# detectron2 v0.6 averages IoU over the classes that occur in the GT *or* the prediction (tail
# counts as IoU 0, leg is left out) and reports NaN IoU/ACC for classes absent from the GT:
#   mIoU  = (1/3 + 2/3 + 0 + 7/8) / 4          = 1.875 / 4       = 46.875 %
#   mACC  = (1/2 + 4/5 + 7/8) / 3              = 2.175 / 3       = 72.5 %
#   pACC  = (1 + 4 + 7) / 15                   = 12 / 15         = 80 %
#   fwIoU = 2/15 * 1/3 + 5/15 * 2/3 + 8/15 * 7/8 = (2 + 10 + 21) / 45 = 33/45 = 73.333... %
EXPECTED = {
    "mIoU": 100 * 1.875 / 4,
    "mACC": 100 * 2.175 / 3,
    "pACC": 100 * 12 / 15,
    "fwIoU": 100 * 33 / 45,
    "IoU-head": 100 / 3,
    "IoU-body": 200 / 3,
    "IoU-background": 87.5,
    "ACC-head": 50.0,
    "ACC-body": 80.0,
    "ACC-background": 87.5,
}
ABSENT_FROM_GT = ["IoU-tail", "IoU-leg", "ACC-tail", "ACC-leg"]


@pytest.fixture
def label_map_dataset(tmp_path):
    """Register a 2-image sem-seg dataset whose label PNGs are GT_A and GT_B."""
    name = f"test_semseg_{uuid.uuid4().hex[:8]}"
    dicts = []
    for image_id, gt in enumerate((GT_A, GT_B)):
        label_file = tmp_path / f"label_{image_id}.png"
        Image.fromarray(np.array(gt, dtype=np.uint8)).save(label_file)
        dicts.append(
            {
                "file_name": str(tmp_path / f"image_{image_id}.jpg"),  # never opened
                "image_id": image_id,
                "height": 2,
                "width": 4,
                "sem_seg_file_name": str(label_file),
            }
        )
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(
        stuff_classes=STUFF_CLASSES,
        ignore_label=IGNORE,
        evaluator_type="sem_seg",
        sem_seg_root=str(tmp_path),
    )
    yield name, dicts
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _scores(label_map, num_classes=len(STUFF_CLASSES)):
    """A model's ``sem_seg`` output: (num_classes, H, W) float scores whose argmax is label_map."""
    labels = torch.tensor(label_map)
    return torch.nn.functional.one_hot(labels, num_classes).permute(2, 0, 1).float()


def test_label_pngs_round_trip(label_map_dataset):
    _, dicts = label_map_dataset
    stored = np.asarray(Image.open(dicts[0]["sem_seg_file_name"]))
    assert stored.dtype == np.uint8 and stored.tolist() == GT_A


@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "batch-of-2"])
def test_semseg_evaluator_known_values(label_map_dataset, tmp_path, batched):
    name, dicts = label_map_dataset
    evaluator = SemSegEvaluator(name, distributed=False, output_dir=str(tmp_path / "eval"))
    evaluator.reset()
    outputs = [{"sem_seg": _scores(PRED_A)}, {"sem_seg": _scores(PRED_B)}]
    if batched:
        evaluator.process(dicts, outputs)
    else:
        for d, out in zip(dicts, outputs):
            evaluator.process([d], [out])
    results = evaluator.evaluate()["sem_seg"]

    for key, value in EXPECTED.items():
        assert results[key] == pytest.approx(value, abs=1e-9), key
    for key in ABSENT_FROM_GT:
        assert np.isnan(results[key]), key
    assert (tmp_path / "eval" / "sem_seg_predictions.json").is_file()


def test_semseg_evaluator_perfect_prediction(label_map_dataset):
    """The same maps as prediction give 100 everywhere (the ignored pixel predicted as "head")."""
    name, dicts = label_map_dataset
    evaluator = SemSegEvaluator(name, distributed=False)
    evaluator.reset()
    pred_a = [row[:] for row in GT_A]
    pred_a[1][3] = 0
    evaluator.process(dicts, [{"sem_seg": _scores(pred_a)}, {"sem_seg": _scores(GT_B)}])
    results = evaluator.evaluate()["sem_seg"]
    for key in ("mIoU", "mACC", "pACC", "fwIoU"):
        assert results[key] == pytest.approx(100.0), key
