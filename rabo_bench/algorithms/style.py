"""How a method looks in every figure: one colour, marker and line style per algorithm name, the
same in every figure of every report and in the rate plots, whatever else a figure shows.

The paper's methods and baselines have fixed entries (matplotlib's tab10, in the order of the
paper's tables); any other name gets a colour and a marker from a hash of the name, so it too
keeps them from figure to figure (two such names may share one). The paper's methods are solid
lines, every other method dashed. Colours are hex strings: no plotting library is needed here,
and both ``rabo_bench.report`` and ``rabo_bench.theory`` (one floor up) can use this module.
"""

from __future__ import annotations

import zlib
from typing import NamedTuple

PAPER_METHODS = ("rabo", "rafbo")

# name -> (colour, marker)
FIXED = {
    "rabo": ("#1f77b4", "o"),
    "rafbo": ("#ff7f0e", "s"),
    "fedmbo": ("#2ca02c", "D"),
    "fedavg": ("#d62728", "^"),
    "static": ("#9467bd", "v"),
    "oap": ("#8c564b", "P"),
    "fedrolex": ("#e377c2", "X"),
    "fiarse": ("#7f7f7f", "*"),
    "protonet": ("#bcbd22", "h"),
    "maml": ("#17becf", "p"),
}
# for other names: tab20b's darker shades, none of them in FIXED, and markers none of FIXED use
EXTRA_COLOURS = (
    "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173",
    "#5254a3", "#8ca252", "#bd9e39", "#ad494a", "#a55194",
)  # fmt: skip
EXTRA_MARKERS = ("<", ">", "d", "H", "8")


class MethodStyle(NamedTuple):
    colour: str
    marker: str
    linestyle: str


def method_style(name: str) -> MethodStyle:
    """The colour, marker and line style of algorithm ``name`` (see the module docstring)."""
    linestyle = "-" if name in PAPER_METHODS else "--"
    if name in FIXED:
        return MethodStyle(*FIXED[name], linestyle)
    code = zlib.crc32(name.encode())  # a fixed hash: Python's hash() changes between runs
    colour = EXTRA_COLOURS[code % len(EXTRA_COLOURS)]
    marker = EXTRA_MARKERS[code // len(EXTRA_COLOURS) % len(EXTRA_MARKERS)]
    return MethodStyle(colour, marker, linestyle)


def file_metadata(suffix: str) -> dict | None:
    """What a saved figure file records about itself: no creation date in a PDF, so a figure
    redrawn from the same results is the same file (a PNG records none)."""
    return {"CreationDate": None} if suffix == ".pdf" else None
