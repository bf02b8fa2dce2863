"""Coincident atoms: an edge shorter than ``min_distance`` between two distinct atoms (or
an atom and a periodic image) makes ``1/r`` and unit vectors blow up downstream, so the
radius builders refuse it at the point where they already know the distances.

Backends raise :class:`CoincidentEdge` in their own frame (nodes sorted by graph,
positions wrapped into the cell); :func:`coincidence_message` translates it into the
caller's numbering and shifts.
"""
from __future__ import annotations

import math
from typing import Optional

from torch import Tensor

#: Default ``min_distance`` of the radius builders, Å: far below any physical bond
#: (H2 is 0.74 Å) yet far above float32 round-off of coordinates of a few hundred Å.
DEFAULT_MIN_DISTANCE = 1e-4


class CoincidentEdge(Exception):
    """An edge shorter than ``min_distance`` found by a backend: ``centre`` and
    ``neighbour`` in sorted-batch numbering, ``shift`` (or ``None``) between wrapped
    positions, ``distance`` its length."""

    def __init__(self, centre: int, neighbour: int, shift: Optional[list[int]], distance: float):
        super().__init__(centre, neighbour, shift, distance)
        self.centre, self.neighbour, self.shift, self.distance = centre, neighbour, shift, distance


def raise_first(bad: Tensor, centre: Tensor, neighbour: Tensor, shift: Optional[Tensor], dist2: Tensor) -> None:
    """Raise :class:`CoincidentEdge` for the first ``True`` of the mask ``bad`` (if any)."""
    if not bool(bad.any()):
        return
    k = int(bad.nonzero()[0, 0])
    s = None if shift is None else [int(v) for v in shift[k].tolist()]
    raise CoincidentEdge(int(centre[k]), int(neighbour[k]), s, math.sqrt(max(float(dist2[k]), 0.0)))


def coincidence_message(err: CoincidentEdge, min_distance: float, perm: Optional[Tensor], batch_s: Tensor,
                        offset: Optional[Tensor], num_graphs: int) -> str:
    """The :class:`ValueError` text for ``err``: atom indices as the caller numbered them,
    the shift as the caller's positions need it, the graph when there are several."""
    c, j = err.centre, err.neighbour
    graph = int(batch_s[c])
    shift = err.shift
    if shift is not None and offset is not None:
        # shifts between wrapped positions -> shifts between the positions given
        shift = [s + int(oc) - int(oj) for s, oc, oj in zip(shift, offset[c].tolist(), offset[j].tolist())]
    if perm is not None:
        c, j = int(perm[c]), int(perm[j])
    if c > j:  # report the pair the same way whichever direction a backend met first
        c, j = j, c
        shift = None if shift is None else [-s for s in shift]
    where = f" of graph {graph}" if num_graphs > 1 else ""
    if shift is not None and any(shift):
        what = f"atom {c} and the periodic image of atom {j} at shift {shift}{where} coincide"
    else:
        what = f"atoms {c} and {j}{where} coincide"
    return (f"{what} (distance {err.distance:.3g} Å < min_distance={min_distance:g}); remove or merge the "
            "duplicate atoms, or pass min_distance=0 if repeated points are intended")
