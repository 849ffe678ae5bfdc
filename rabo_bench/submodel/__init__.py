"""Sub-model masks (SPEC eq. 3) and dense sub-models built on them (SPEC eq. 4)."""

from rabo_bench.submodel.element import ElementMask
from rabo_bench.submodel.mask import StructuredMask, embed, extract, scatter

__all__ = ["ElementMask", "StructuredMask", "embed", "extract", "scatter"]
