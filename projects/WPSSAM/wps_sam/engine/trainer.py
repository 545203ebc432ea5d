"""The trainer of ``tools/train_net.py``: detectron2's ``DefaultTrainer`` with WPS-SAM's data
loader (exact resume), mappers, optimizer, LR schedule and part-segmentation evaluators."""

import json
import logging
import os

import detectron2.utils.comm as comm
from detectron2.data import MetadataCatalog, build_detection_test_loader
from detectron2.engine import DefaultTrainer
from detectron2.evaluation import DatasetEvaluators

from ..data.build_mapper import build_mapper
from ..data.resumable_train_loader import build_resumable_train_loader
from ..evaluation import build_wps_sam_evaluators
from ..evaluation.detector_box_evaluation import DetectorBoxEvaluator
from ..solver import build_wps_sam_lr_scheduler, build_wps_sam_optimizer
from .exact_resume import ExactResumeMixin
from .train_time_hook import TrainTimeHook

__all__ = ["Trainer", "save_results"]


class Trainer(ExactResumeMixin, DefaultTrainer):
    """DefaultTrainer with WPS-SAM's mapper, optimizer and part-segmentation evaluators."""

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type", None)
        if evaluator_type != "sem_seg":
            raise NotImplementedError(
                f"No evaluator for dataset {dataset_name!r} of evaluator_type {evaluator_type!r}"
            )
        evaluators = build_wps_sam_evaluators(
            dataset_name, output_folder, authors_metrics=cfg.TEST.AUTHORS_METRICS
        )
        if cfg.MODEL.META_ARCHITECTURE == "DetSAM" and cfg.MODEL.DET_SAM.EVAL_BOX_AP:
            # Det-SAM: also the part detector's box AP (paper Table 4).
            box_ap = DetectorBoxEvaluator(dataset_name, output_dir=output_folder)
            evaluators = DatasetEvaluators([evaluators, box_ap])
        return evaluators

    def build_hooks(self):
        # Training time (``train_seconds`` in metrics.json), right after the exact-resume state
        # hook and before the evaluation hook, so that evaluation time is not counted.
        hooks = super().build_hooks()
        return hooks[:1] + [TrainTimeHook()] + hooks[1:]

    @classmethod
    def build_train_loader(cls, cfg):
        # detectron2's loader, whose data order continues where it stopped on --resume.
        # The mapper of META_ARCHITECTURE: WPS-SAM's, Det-SAM's or detectron2's (built-in models).
        return build_resumable_train_loader(cfg, build_mapper(cfg, is_train=True))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        mapper = build_mapper(cfg, is_train=False)
        return build_detection_test_loader(cfg, dataset_name, mapper=mapper)

    @classmethod
    def build_optimizer(cls, cfg, model):
        if cfg.MODEL.META_ARCHITECTURE != "WPSSAM":  # Det-SAM's detector, built-in models
            return super().build_optimizer(cfg, model)
        return build_wps_sam_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        return build_wps_sam_lr_scheduler(cfg, optimizer)


def save_results(cfg, results):
    """Write the final evaluation results to OUTPUT_DIR/results.json (for scripts and tables)."""
    if not comm.is_main_process() or not results:
        return
    path = os.path.join(cfg.OUTPUT_DIR, "results.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=1, default=float)
    logging.getLogger("wps_sam").info(f"Results written to {path}")
