"""Sub-model masks (SPEC eq. 3) and dense sub-models built on them (SPEC eq. 4)."""

from rabo_bench.submodel.mask import StructuredMask, embed, extract, scatter

__all__ = ["StructuredMask", "embed", "extract", "scatter"]
