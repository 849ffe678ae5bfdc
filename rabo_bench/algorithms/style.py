"""How a method looks in every figure: one colour, marker and line style per algorithm name, the
same in every figure of every report and in the rate plots, whatever else a figure shows.

The paper's methods and baselines have fixed entries (matplotlib's tab10, in the order of the
paper's tables), and so do the field's bilevel methods of docs/algorithms/ (tab20b's darker
shades); any other name gets a colour and a marker from a hash of the name, so it too keeps
them from figure to figure (two such names may share one). The paper's methods are solid
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
    # the field's federated bilevel methods (issue 19): tab20b's darker shades, distinct
    "fednest": ("#393b79", "<"),
    "lfednest": ("#637939", ">"),
    "simfbo": ("#8c6d31", "d"),
    "aggitd": ("#843c39", "H"),
    "fedbioacc": ("#7b4173", "8"),
}
# for other names: tab20b's lighter shades and markers, none of them in FIXED
EXTRA_COLOURS = (
    "#5254a3", "#8ca252", "#bd9e39", "#ad494a", "#a55194",
    "#6b6ecf", "#b5cf6b", "#e7ba52", "#d6616b", "#ce6dbd",
)  # fmt: skip
EXTRA_MARKERS = ("1", "2", "3", "4", "+")


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
