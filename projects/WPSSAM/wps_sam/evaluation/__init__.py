"""Evaluators of WPS-SAM: the standard semantic-segmentation protocol and the paper's protocol."""

from .paper_protocol_evaluation import (  # noqa: F401
    PaperProtocolEvaluator,
    authors_frame,
    binary_iou,
    row_averaged_binary_iou,
    row_averaged_pixel_accuracy,
)
from .part_sem_seg_evaluation import PartSemSegEvaluator, part_only_metrics  # noqa: F401


def build_wps_sam_evaluators(
    dataset_name, output_folder=None, distributed=True, authors_metrics=False
):
    """
    The evaluators of a WPS-SAM test set, as one ``DatasetEvaluators``:
    :class:`PartSemSegEvaluator` (results under ``"sem_seg"``) and
    :class:`PaperProtocolEvaluator` (results under ``"paper_protocol"``; with
    ``authors_metrics`` (``TEST.AUTHORS_METRICS``) also the authors' exact numbers beside ours).
    """
    from detectron2.evaluation import DatasetEvaluators

    return DatasetEvaluators(
        [
            PartSemSegEvaluator(dataset_name, distributed=distributed, output_dir=output_folder),
            PaperProtocolEvaluator(
                dataset_name,
                distributed=distributed,
                output_dir=output_folder,
                authors_metrics=authors_metrics,
            ),
        ]
    )
