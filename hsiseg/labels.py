"""Label sentinels, defined once: the negative values a label map may hold besides tree codes (>= 0).

- :data:`UNLABELLED` (-100): no annotation / no truth here (the losses' ``ignore_index``).
- :data:`UNKNOWN` (-1): predicted, but unlike every trained class (the OOD score is below its threshold).
- :data:`INVALID` (-2): no usable spectrum (non-finite, all zero or saturated): never tissue, never unknown.
"""

UNLABELLED = -100
UNKNOWN = -1
INVALID = -2
