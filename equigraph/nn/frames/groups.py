"""Finite sets of rotations for group averaging: the octahedral groups (the symmetries of
the cube) and fixed random samples of SO(3).
"""
from __future__ import annotations

import itertools
from typing import Union

import torch
from torch import Tensor

from equigraph.symmetry import random_rotation

__all__ = ["octahedral_group", "finite_group", "FINITE_GROUPS", "check_rotations"]

#: Names accepted by :func:`finite_group`, with their orders.
FINITE_GROUPS = {"octahedral": 24, "full_octahedral": 48}


def octahedral_group(improper: bool = False, dtype: torch.dtype = torch.float64) -> Tensor:
    """The signed permutation matrices: the 24 rotations of the cube (``O``), or with
    ``improper=True`` all 48 of its symmetries including reflections (``O_h``). The identity
    comes first.

    >>> G = octahedral_group(improper=True)
    >>> G.shape, sorted(set(torch.det(G).round().tolist()))
    (torch.Size([48, 3, 3]), [-1.0, 1.0])
    """
    mats = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            m = torch.zeros(3, 3, dtype=torch.float64)
            m[torch.arange(3), torch.tensor(perm)] = torch.tensor(signs, dtype=torch.float64)
            if improper or torch.det(m) > 0:
                mats.append(m)
    return torch.stack(mats).to(dtype)


def check_rotations(rotations: Tensor, name: str = "group") -> Tensor:
    """``rotations`` as a float64 ``[m, 3, 3]`` tensor of orthogonal matrices; ``ValueError``
    naming ``name`` otherwise."""
    if not isinstance(rotations, Tensor) or rotations.dim() != 3 or rotations.shape[1:] != (3, 3) \
            or rotations.size(0) == 0 or not rotations.is_floating_point():
        shape = list(rotations.shape) if isinstance(rotations, Tensor) else type(rotations).__name__
        raise ValueError(f"`{name}` must be a non-empty float [m, 3, 3] tensor of orthogonal matrices, got {shape}")
    R = rotations.detach().to(torch.float64)
    err = (R @ R.transpose(1, 2) - torch.eye(3, dtype=torch.float64)).abs().amax(dim=(1, 2))
    if not bool((err < 1e-5).all()):
        bad = int((err >= 1e-5).nonzero()[0])
        raise ValueError(f"`{name}`: matrix {bad} is not orthogonal (max |R R^T - I| = {float(err[bad]):.2g})")
    return R


def finite_group(group: Union[str, int, Tensor], seed: int = 0) -> Tensor:
    """``[m, 3, 3]`` float64 matrices of ``group``: ``"octahedral"`` (24 rotations),
    ``"full_octahedral"`` (48, with reflections), an int ``m`` (``m`` Haar-random rotations
    drawn with ``seed``, the identity first; not a group, so averaging over them is only
    approximately equivariant), or a tensor of orthogonal matrices.

    >>> finite_group("octahedral").shape, finite_group(5).shape
    (torch.Size([24, 3, 3]), torch.Size([5, 3, 3]))
    """
    if isinstance(group, str):
        if group not in FINITE_GROUPS:
            raise ValueError(f"`group` must be one of {sorted(FINITE_GROUPS)}, a number of random rotations "
                             f"or a [m, 3, 3] tensor, got {group!r}")
        return octahedral_group(improper=group == "full_octahedral")
    if isinstance(group, int) and not isinstance(group, bool):
        if group < 1:
            raise ValueError(f"`group`: the number of random rotations must be positive, got {group}")
        sample = random_rotation(group - 1, generator=seed) if group > 1 else torch.zeros(0, 3, 3, dtype=torch.float64)
        return torch.cat([torch.eye(3, dtype=torch.float64).unsqueeze(0), sample])
    if isinstance(group, Tensor):
        return check_rotations(group)
    raise ValueError(f"`group` must be one of {sorted(FINITE_GROUPS)}, an int or a [m, 3, 3] tensor, "
                     f"got {type(group).__name__}")
