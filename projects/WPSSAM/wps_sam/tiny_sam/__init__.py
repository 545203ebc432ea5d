"""The project's tiny SAM: its class-agnostic pre-training streams and training loop.

* :mod:`.generic_shapes`: generic random shapes (tiny SAM v1's only data).
* :mod:`.pretraining_data`: tiny SAM v2's stream, part objects at every granularity and generic
  shapes, from a split that no benchmark split uses; never a class label.
* :mod:`.training`: prompt sampling, SAM's losses, the training loop and held-out evaluation.

``tools/train_tiny_sam.py`` is the command line; ``docs/MODEL_ZOO.md`` has the commands.
"""
