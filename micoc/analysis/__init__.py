"""Pure analyses over the IR (no target knowledge): MACs, BOPs, CBOPs features, bytes."""

from micoc.analysis.layer_features import (
    BIT_RANGE,
    DEFAULT_BITS,
    FEATURES,
    ConvGeometry,
    GemmGeometry,
    LayerCost,
    LayerInfo,
    LayerTable,
    PoolGeometry,
    PoolInfo,
    batch_features,
    check_schemes,
    layer_costs,
    layer_table,
    scheme_array,
    totals,
)

__all__ = [
    "BIT_RANGE",
    "DEFAULT_BITS",
    "FEATURES",
    "ConvGeometry",
    "GemmGeometry",
    "LayerCost",
    "LayerInfo",
    "LayerTable",
    "PoolGeometry",
    "PoolInfo",
    "batch_features",
    "check_schemes",
    "layer_costs",
    "layer_table",
    "scheme_array",
    "totals",
]
