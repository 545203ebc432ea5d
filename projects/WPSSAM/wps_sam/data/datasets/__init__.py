# Each module registers one dataset family on import.
from . import register_partimagenet  # noqa: F401
from . import register_pascal_part  # noqa: F401
from . import register_synthetic_parts  # noqa: F401

from . import register_pseudo_labels  # noqa: F401  isort:skip  (after the datasets it reads)
