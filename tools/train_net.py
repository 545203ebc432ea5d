#!/usr/bin/env python
"""WPS-SAM training and evaluation script (detectron2's train_net, for this project).

python tools/train_net.py --config-file configs/wps_sam.yaml
python tools/train_net.py --config-file configs/wps_sam.yaml --eval-only \
        MODEL.WEIGHTS output/partimagenet/wps_sam_vit_b_box_q25_150ep/model_final.pth
python tools/train_net.py --num-gpus 2 ...   # 2 processes: GPUs (NCCL), else CPUs (gloo)

The trainer and the config setup live in the package (wps_sam.engine.trainer, .train_setup).
"""

import wps_sam  # noqa: F401  isort:skip  (applies the detectron2 compatibility layer first)
import detectron2.utils.comm as comm  # noqa: E402
from detectron2.engine import default_argument_parser  # noqa: E402
from detectron2.evaluation import verify_results  # noqa: E402

from wps_sam.distributed import launch  # noqa: E402  (detectron2's on CUDA, gloo on CPU)
from wps_sam.engine import WPSSAMCheckpointer, log_startup_summary  # noqa: E402
from wps_sam.engine.train_setup import setup  # noqa: E402
from wps_sam.engine.trainer import Trainer, save_results  # noqa: E402


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
