#!/usr/bin/env python
"""WPS-SAM training and evaluation script (detectron2's train_net, for this project).

python tools/train_net.py --config-file configs/wps_sam.yaml
python tools/train_net.py --config-file configs/wps_sam.yaml --eval-only \
        MODEL.WEIGHTS output/partimagenet/wps_sam_vit_b_box_q25_150ep/model_final.pth
python tools/train_net.py --num-gpus 2 ...   # 2 processes: GPUs (NCCL), else CPUs (gloo)
"""

import json
import logging
import os

import torch

import wps_sam  # noqa: F401  isort:skip  (applies the detectron2 compatibility layer first)
import detectron2.utils.comm as comm  # noqa: E402
from detectron2.config import get_cfg  # noqa: E402
from detectron2.data import (  # noqa: E402
    MetadataCatalog,
    build_detection_test_loader,
)
from detectron2.engine import DefaultTrainer, default_argument_parser, default_setup  # noqa: E402
from detectron2.evaluation import DatasetEvaluators, verify_results  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402

from wps_sam import add_wps_sam_config  # noqa: E402
from wps_sam.data.build_mapper import build_mapper  # noqa: E402
from wps_sam.data.catalog_utils import resolve_num_classes  # noqa: E402
from wps_sam.data.resumable_train_loader import build_resumable_train_loader  # noqa: E402
from wps_sam.distributed import launch  # noqa: E402  (detectron2's on CUDA, gloo on CPU)
from wps_sam.engine import (  # noqa: E402
    ExactResumeMixin,
    WPSSAMCheckpointer,
    log_startup_summary,
)
from wps_sam.evaluation import build_wps_sam_evaluators  # noqa: E402
from wps_sam.evaluation.detector_box_evaluation import DetectorBoxEvaluator  # noqa: E402
from wps_sam.solver import (  # noqa: E402
    build_wps_sam_lr_scheduler,
    build_wps_sam_optimizer,
    resolve_epoch_schedule,
)


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


def setup(args):
    cfg = get_cfg()
    add_wps_sam_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logging.getLogger("wps_sam").warning("CUDA is not available: running on the CPU")
        cfg.MODEL.DEVICE = "cpu"
    resolve_num_classes(cfg)
    if not args.eval_only:
        resolve_epoch_schedule(cfg)
    cfg.freeze()
    default_setup(cfg, args)
    setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="wps_sam")
    return cfg


def save_results(cfg, results):
    """Write the final evaluation results to OUTPUT_DIR/results.json (for scripts and tables)."""
    if not comm.is_main_process() or not results:
        return
    path = os.path.join(cfg.OUTPUT_DIR, "results.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=1, default=float)
    logging.getLogger("wps_sam").info(f"Results written to {path}")


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        # Clear errors for a missing, truncated or unsafe MODEL.WEIGHTS (docs/TROUBLESHOOTING.md).
        WPSSAMCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        if comm.is_main_process():
            log_startup_summary(cfg, model, train=False)
        res = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, res)
        save_results(cfg, res)
        return res
    trainer = Trainer(cfg)
    if comm.is_main_process():
        log_startup_summary(cfg, trainer.model)
    trainer.resume_or_load(resume=args.resume)
    res = trainer.train()
    # The final evaluation (EvalHook after the last iteration) is kept by the trainer.
    save_results(cfg, res or getattr(trainer, "_last_eval_results", None))
    return res


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
