"""Sub-model masks (SPEC eq. 3) and dense sub-models built on them (SPEC eq. 4)."""

from rabo_bench.submodel.element import ElementMask
from rabo_bench.submodel.mask import ClientMasks, StructuredMask, embed, extract, scatter

__all__ = ["ClientMasks", "ElementMask", "StructuredMask", "embed", "extract", "scatter"]
