"""The box AP of Det-SAM's part detector (paper Table 4), beside the segmentation evaluators."""

from detectron2.evaluation import COCOEvaluator

__all__ = ["DetectorBoxEvaluator"]


class DetectorBoxEvaluator(COCOEvaluator):
    """detectron2's COCO box AP of the detections Det-SAM prompted SAM with.

    Scores the model outputs' ``"detector_instances"`` (every detection, before Det-SAM's score
    threshold, as a detector's AP is always measured) when present, else ``"instances"``. Uses
    COCOEvaluator's pure-Python path (``use_fast_impl=False``): detectron2's compiled ops may be
    absent. The ground truth is the dataset's COCO JSON (metadata ``json_file``). Results are
    under ``"bbox"``: AP, AP50, AP75, APs, APm, APl and AP-<class>.
    """

    def __init__(self, dataset_name, distributed=True, output_dir=None):
        super().__init__(
            dataset_name,
            tasks=("bbox",),
            distributed=distributed,
            output_dir=output_dir,
            use_fast_impl=False,
        )

    def process(self, inputs, outputs):
        outputs = [{"instances": o.get("detector_instances", o.get("instances"))} for o in outputs]
        super().process(inputs, outputs)
