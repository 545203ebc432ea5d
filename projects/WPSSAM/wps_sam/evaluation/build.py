"""The evaluators run by tools/train_net.py on part-segmentation datasets."""
from .part_protocol_evaluation import PaperProtocolEvaluator
from .sem_seg_evaluation import PartSemSegEvaluator

__all__ = ["build_part_evaluators"]


def build_part_evaluators(cfg, dataset_name, output_folder):
    """detectron2's semantic-segmentation metrics (+ part-only mIoU) and the paper's protocol."""
    return [
        PartSemSegEvaluator(dataset_name, distributed=True, output_dir=output_folder),
        PaperProtocolEvaluator(dataset_name, distributed=True, output_dir=output_folder),
    ]
