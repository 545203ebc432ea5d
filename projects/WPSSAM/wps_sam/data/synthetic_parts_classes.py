"""The part classes of the synthetic part benchmark, for its registration.

Registering ``synthetic_parts_*`` needs only these names (detectron2's metadata is set when a
dataset is registered), not the generator: :mod:`wps_sam.synthetic.parts` draws the images and
is imported only by the scripts that generate them (``datasets/prepare_synthetic_parts.py``,
``tools/run_synthetic_benchmark.py``). It is the table's one home: the generator
(:mod:`wps_sam.synthetic.part_objects`) builds its objects from it.
"""

__all__ = [
    "SYNTHETIC_PART_CLASSES",
    "SYNTHETIC_PART_SUPERCATEGORIES",
    "SYNTHETIC_PART_TABLE",
]

# (object kind, part) in class-id order 0..C-1; background is C = 20 in the label PNGs.
SYNTHETIC_PART_TABLE = (
    ("House", "Roof"),
    ("House", "Wall"),
    ("House", "Door"),
    ("House", "Chimney"),
    ("Fish", "Body"),
    ("Fish", "Tail"),
    ("Fish", "Fin"),
    ("Car", "Body"),
    ("Car", "Wheel"),
    ("Car", "Window"),
    ("Tree", "Trunk"),
    ("Tree", "Crown"),
    ("Snowman", "Head"),
    ("Snowman", "Body"),
    ("Snowman", "Hat"),
    ("Snowman", "Arm"),
    ("Robot", "Head"),
    ("Robot", "Body"),
    ("Robot", "Arm"),
    ("Robot", "Leg"),
)
# "<kind> <part>", e.g. "House Roof"; the supercategory of each class is its object kind.
SYNTHETIC_PART_CLASSES = [f"{kind} {part}" for kind, part in SYNTHETIC_PART_TABLE]
SYNTHETIC_PART_SUPERCATEGORIES = [kind for kind, _ in SYNTHETIC_PART_TABLE]
