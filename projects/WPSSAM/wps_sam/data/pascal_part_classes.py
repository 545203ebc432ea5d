"""The PASCAL-Part merge table: fine Pascal-Part parts -> the higher-level parts we train and score.

WPS-SAM (following Compositor) uses the 16 VOC classes that have part annotations (all but boat,
chair, diningtable, sofa) and merges the fine parts ("eyes, ears, nose ... into head"); the exact
merged list was never published, so this table is **ours**. It is the single source of truth for
``datasets/prepare_pascal_part.py`` and the ``pascal_part_*`` registration.

* :data:`PASCAL_PART_MERGE_TABLE`: object class -> list of (merged part, source part-name patterns).
  Patterns are ``fnmatch`` patterns on the Pascal-Part part names (``door_*`` matches ``door_1``).
* Part class ids are stable: the order of this table (objects in VOC order, parts in listed order),
  ``0..C-1``; their names are ``"<object> <part>"`` (for example ``"cat head"``).
* ``background`` = C in the label PNGs (pixels of no object of the 16 classes, including objects of
  the 4 classes without parts); ``255`` = ignore (pixels of an object of the 16 classes that no
  known part covers: e.g. a bicycle frame, or an object annotated without parts).

Changing the table changes the class ids: re-run the conversion afterwards.
"""

import fnmatch

__all__ = [
    "PASCAL_PART_MERGE_TABLE",
    "PASCAL_PART_OBJECT_CLASSES",
    "PASCAL_PART_EXCLUDED_OBJECTS",
    "PASCAL_PART_CLASS_ALIASES",
    "PASCAL_PART_CLASSES",
    "PASCAL_PART_BACKGROUND_ID",
    "PASCAL_PART_IGNORE_LABEL",
    "merged_part_id",
]

_HEAD_FACE = ["head", "leye", "reye", "lear", "rear", "nose", "muzzle", "lhorn", "rhorn"]
_VEHICLE = [
    ("body", ["frontside", "leftside", "rightside", "backside", "roofside", "door_*", "*liplate"]),
    ("window", ["window_*"]),
    ("wheel", ["wheel_*"]),
    ("light", ["headlight_*"]),
    ("mirror", ["leftmirror", "rightmirror"]),
]
_SMALL_ANIMAL = [  # cat, dog: lower legs and paws
    ("head", _HEAD_FACE),
    ("torso", ["torso", "neck"]),
    ("leg", ["lfleg", "rfleg", "lbleg", "rbleg", "lfpa", "rfpa", "lbpa", "rbpa"]),
    ("tail", ["tail"]),
]
_HOOFED_ANIMAL = [  # cow, horse, sheep: upper/lower legs and hooves
    ("head", _HEAD_FACE),
    ("torso", ["torso", "neck"]),
    ("leg", ["[lr][fb]uleg", "[lr][fb]lleg", "[lr][fb]ho"]),
    ("tail", ["tail"]),
]

# object -> [(merged part, [source part-name patterns])], in VOC class order.
PASCAL_PART_MERGE_TABLE = {
    "aeroplane": [
        ("body", ["body", "stern"]),
        ("wing", ["lwing", "rwing"]),
        ("tail", ["tail"]),
        ("engine", ["engine_*"]),
        ("wheel", ["wheel_*"]),
    ],
    "bicycle": [
        ("wheel", ["fwheel", "bwheel"]),
        ("saddle", ["saddle"]),
        ("handlebar", ["handlebar", "headlight_*"]),
        ("chainwheel", ["chainwheel"]),
    ],
    "bird": [
        ("head", ["head", "leye", "reye", "beak"]),
        ("torso", ["torso", "neck"]),
        ("wing", ["lwing", "rwing"]),
        ("leg", ["lleg", "rleg", "lfoot", "rfoot"]),
        ("tail", ["tail"]),
    ],
    "bottle": [("cap", ["cap"]), ("body", ["body"])],
    "bus": list(_VEHICLE),
    "car": list(_VEHICLE),
    "cat": list(_SMALL_ANIMAL),
    "cow": list(_HOOFED_ANIMAL),
    "dog": list(_SMALL_ANIMAL),
    "horse": list(_HOOFED_ANIMAL),
    "motorbike": [
        ("wheel", ["fwheel", "bwheel"]),
        ("saddle", ["saddle"]),
        ("handlebar", ["handlebar"]),
        ("light", ["headlight_*"]),
    ],
    "person": [
        ("head", ["head", "[lr]eye", "[lr]ear", "[lr]ebrow", "nose", "mouth", "hair"]),
        ("torso", ["torso", "neck"]),
        ("arm", ["[lr]larm", "[lr]uarm", "[lr]hand"]),
        ("leg", ["[lr]lleg", "[lr]uleg", "[lr]foot"]),
    ],
    "pottedplant": [("pot", ["pot"]), ("plant", ["plant"])],
    "sheep": list(_HOOFED_ANIMAL),
    "train": [
        ("head", ["head", "hfrontside", "hleftside", "hrightside", "hbackside", "hroofside"]),
        (
            "coach",
            [
                "coach_*",
                "cfrontside_*",
                "cleftside_*",
                "crightside_*",
                "cbackside_*",
                "croofside_*",
            ],
        ),
        ("light", ["headlight_*"]),
    ],
    "tvmonitor": [("screen", ["screen"])],
}

PASCAL_PART_OBJECT_CLASSES = list(PASCAL_PART_MERGE_TABLE)
# VOC classes without part annotations: their pixels are background.
PASCAL_PART_EXCLUDED_OBJECTS = ["boat", "chair", "diningtable", "sofa"]
# Object class names of the official Pascal-Part .mat files that differ from VOC's: the dining
# table is "table" there. Converters map them to the VOC name before any lookup.
PASCAL_PART_CLASS_ALIASES = {"table": "diningtable"}

PASCAL_PART_CLASSES = [
    f"{obj} {part}" for obj, parts in PASCAL_PART_MERGE_TABLE.items() for part, _ in parts
]
PASCAL_PART_BACKGROUND_ID = len(PASCAL_PART_CLASSES)
PASCAL_PART_IGNORE_LABEL = 255

_ID = {name: i for i, name in enumerate(PASCAL_PART_CLASSES)}


def merged_part_id(object_class, part_name):
    """
    Id of the merged part that a Pascal-Part part belongs to.

    Args:
        object_class (str): VOC class name of the object (``"cat"``).
        part_name (str): Pascal-Part part name (``"leye"``, ``"door_3"``).

    Returns:
        int or None: the part class id, or None if the object class has no parts in the table or
        no pattern matches the part name (the caller counts and reports it).
    """
    for part, patterns in PASCAL_PART_MERGE_TABLE.get(object_class, []):
        if any(fnmatch.fnmatchcase(part_name, pat) for pat in patterns):
            return _ID[f"{object_class} {part}"]
    return None
