"""One client objective evaluated both ways: on the narrow sub-model and on x ⊙ m, y ⊙ m."""

from __future__ import annotations

from rabo_bench.hypergrad import LocalObjective


def physical_and_embedded(problem, client, x, y, masks):
    """(physical, embedded, x_sub, y_sub): two views of client ``client``'s objective under
    ``masks`` (the second forced onto the zero-embedded full model) and the flat sub-vectors
    of (x, y), ready for autograd."""
    physical = LocalObjective(problem, client, x, y, masks.x, masks.y)
    embedded = LocalObjective(problem, client, x, y, masks.x, masks.y)
    embedded._direct_x = embedded._direct_y = False
    assert physical._direct_x and physical._direct_y
    x_sub = physical.pack_x(x).requires_grad_(True)
    y_sub = physical.pack_y(y).requires_grad_(True)
    return physical, embedded, x_sub, y_sub
