"""Slow, obviously-correct references the graph builders are tested against."""
from __future__ import annotations

import itertools

import numpy as np


def open_pairs(pos, r, batch=None, loop=False):
    """Set of (centre, neighbour) pairs closer than r within each graph."""
    pos = np.asarray(pos, dtype=np.float64)
    n = len(pos)
    batch = np.zeros(n, dtype=int) if batch is None else np.asarray(batch)
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    same = batch[:, None] == batch[None]
    mask = same & (d < r)
    if not loop:
        np.fill_diagonal(mask, False)
    else:
        np.fill_diagonal(mask, True)
    i, j = np.nonzero(mask)
    return set(zip(i.tolist(), j.tolist()))


def capped(pos, pairs, k, shifts_of=None):
    """Keep, per centre, the k nearest neighbours with ties broken by neighbour index."""
    pos = np.asarray(pos, dtype=np.float64)
    by_centre = {}
    for p in pairs:
        by_centre.setdefault(p[0], []).append(p)
    kept = set()
    for i, lst in by_centre.items():
        lst.sort(key=lambda p: (np.linalg.norm(pos[p[1]] - pos[i]), p[1]))
        kept.update(lst[:k])
    return kept


def knn_pairs(pos, k, batch=None, loop=False):
    pos = np.asarray(pos, dtype=np.float64)
    n = len(pos)
    batch = np.zeros(n, dtype=int) if batch is None else np.asarray(batch)
    out = set()
    for i in range(n):
        cand = [j for j in range(n) if batch[j] == batch[i] and (loop or j != i)]
        cand.sort(key=lambda j: (np.linalg.norm(pos[j] - pos[i]), j))
        out.update((i, j) for j in cand[:k])
    return out


def periodic_triples(pos, r, cell, pbc, max_image=6):
    """Set of (centre, neighbour, shift) by explicit enumeration of images."""
    pos = np.asarray(pos, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64)
    ranges = [range(-max_image, max_image + 1) if p else range(1) for p in pbc]
    out = set()
    for s in itertools.product(*ranges):
        off = np.asarray(s, dtype=np.float64) @ cell
        d = np.linalg.norm(pos[None, :] + off - pos[:, None], axis=-1)
        i, j = np.nonzero(d < r)
        for a, b in zip(i.tolist(), j.tolist()):
            if a == b and not any(s):
                continue
            out.add((a, b, tuple(s)))
    return out
