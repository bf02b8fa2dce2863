"""Block-diagonal all-pairs candidates: every (centre, neighbour, image) triple inside each
graph of a batch, generated with tensor ops (no Python loop over graphs) in chunks of
bounded size. Cost ``O(sum_g n_g^2 K_g)`` with ``K_g`` periodic images per graph; the
fastest choice for batches of small molecules and the reference for the others."""
from __future__ import annotations

from typing import Iterator, Optional

import torch
from torch import Tensor

#: Candidate triples materialised at once (bounds peak memory to ~0.5 GB).
CHUNK = 1 << 22


def centre_chunks(per_centre: Tensor, budget: int = CHUNK) -> list[tuple[int, int]]:
    """Split centres ``0..N-1`` into contiguous ranges holding about ``budget`` candidates
    each (a centre is never split)."""
    n = per_centre.numel()
    if n == 0:
        return []
    csum = torch.cumsum(per_centre, 0)
    total = int(csum[-1])
    if total <= budget:
        return [(0, n)]
    marks = torch.arange(budget, total, budget, device=csum.device, dtype=csum.dtype)
    cuts = torch.searchsorted(csum, marks, right=True).unique().tolist()
    bounds = [0] + [c for c in cuts if 0 < c < n] + [n]
    return list(zip(bounds[:-1], bounds[1:]))


def block_pairs(batch: Tensor, ptr: Tensor, images: Optional[Tensor] = None,
                budget: int = CHUNK) -> Iterator[tuple[Tensor, Tensor, Optional[Tensor]]]:
    """Yield chunks ``(centre, neighbour, image)`` of all ordered pairs within each graph.

    Args:
        batch (Tensor): ``[N]`` graph index, **sorted**.
        ptr (Tensor): ``[G + 1]`` node offsets of each graph.
        images (Tensor, optional): ``[G]`` number of periodic images ``K_g`` per graph;
            :obj:`None` for open graphs (``image`` is then :obj:`None` too).
        budget (int): candidates per chunk.

    Pairs come out ordered by centre, then neighbour, then image; ``i == j`` is included.
    """
    sizes = ptr[1:] - ptr[:-1]
    start = ptr[:-1][batch]
    per_centre = sizes[batch] if images is None else (sizes * images)[batch]
    device = batch.device
    for a, b in centre_chunks(per_centre, budget):
        counts = per_centre[a:b]
        total = int(counts.sum())
        centre = torch.repeat_interleave(torch.arange(a, b, device=device), counts, output_size=total)
        first = torch.cumsum(counts, 0) - counts
        if images is None:
            # neighbour = graph start + position within the centre's block
            yield centre, torch.arange(total, device=device) + torch.repeat_interleave(
                start[a:b] - first, counts, output_size=total), None
            continue
        local = torch.arange(total, device=device) - torch.repeat_interleave(first, counts, output_size=total)
        k = images[batch[centre]]
        yield centre, start[centre] + torch.div(local, k, rounding_mode="floor"), local % k
