"""One reader for every molecule file a user may hand over: SDF/MOL through RDKit, every
other format through ASE.

RDKit is imported only when an SDF or MOL file is read.
"""
from __future__ import annotations

import os
import warnings

import torch
from torch_geometric.data import Data

__all__ = ["read_molecules", "SDF_SUFFIXES", "drop_uneven_attributes"]

SDF_SUFFIXES = (".sdf", ".sd", ".mol")
"""File name endings (any case) read by RDKit (:func:`~equigraph.data.read_sdf`)."""


def drop_uneven_attributes(graphs: list[Data], path: str, what: str = "attributes",
                           unit: str = "record") -> list[str]:
    """Delete, in place, every attribute that some of ``graphs`` lack or that holds a
    tensor in one graph and another kind of value in another, so that the list batches
    (:class:`~torch_geometric.data.Batch` takes its keys from the first graph). Warns
    naming ``path``, the attributes and the first ``unit`` that lacks one; returns the
    names dropped."""
    if not graphs:
        return []
    everywhere = set.intersection(*(set(g.keys()) for g in graphs))
    dropped = set().union(*(set(g.keys()) for g in graphs)) - everywhere
    for key in everywhere:
        if len({isinstance(g[key], torch.Tensor) for g in graphs}) > 1:
            dropped.add(key)
    if not dropped:
        return []
    first = next((i for i, g in enumerate(graphs) if not dropped <= set(g.keys())), None)
    names = sorted(dropped)
    for g in graphs:
        for key in names:
            if key in g:
                del g[key]
    where = f" (first: {unit} {first})" if first is not None else ""
    warnings.warn(
        f"{path}: {what} {', '.join(map(repr, names))} are missing from some {unit}s{where} or "
        f"differ in kind, and were dropped from every {unit} so that the molecules batch together",
        UserWarning, stacklevel=3,
    )
    return names


def read_molecules(path: str | os.PathLike, *, embed: bool = False, seed: int = 0,
                   dtype: torch.dtype | None = None) -> list[Data]:
    r"""Every molecule of a file, as :class:`~torch_geometric.data.Data` with ``z`` ``[N]``,
    ``pos`` ``[N, 3]`` (Å) and ``name``.

    ``.sdf``, ``.sd`` and ``.mol`` files are read by RDKit (:func:`~equigraph.data.read_sdf`):
    2D depictions and records without their hydrogens are refused, or with ``embed=True``
    given hydrogens and 3D coordinates (ETKDG + MMFF94, ``seed``). Every other format is
    read by ASE (:func:`~equigraph.data.read`: xyz, extxyz, pdb, cif, POSCAR, traj, ...)
    with the geometry as given (``embed`` does not apply); those graphs also carry ``cell``
    and ``pbc`` and any labels the file holds (``energy``, ``forces``, ...).

    ``name`` is the record's title (SDF) or ``name`` entry (extxyz), else
    ``"{path}[i]"`` with the 0-based index ``i`` in the file. Attributes that only some
    records carry (SD properties, words of plain XYZ comment lines that ASE reads as
    flags) are dropped from all, with a warning, so that the list batches.

    Args:
        path (str or PathLike): the file.
        embed (bool, optional): embed 2D or hydrogen-less SDF/MOL records in 3D instead of
            refusing them (default: :obj:`False`).
        seed (int, optional): embedding seed (default: :obj:`0`).
        dtype (torch.dtype, optional): floating dtype (default: torch's default dtype).

    Returns:
        A list with one :class:`Data` per record or frame, in file order.

    Raises:
        ValueError: one line naming the file, and the record, frame or line where there is
            one: the file is missing, a directory or empty; a record cannot be parsed, is
            2D or lacks hydrogens; an XYZ line is malformed or names an unknown element; a
            frame has non-finite coordinates; or ASE cannot read the format.

    Example:
        >>> import os, tempfile
        >>> from ase.build import molecule
        >>> from ase.io import write
        >>> p = os.path.join(tempfile.mkdtemp(), "w.xyz")
        >>> write(p, [molecule("H2O"), molecule("NH3")])
        >>> [(g.name.rsplit(os.sep, 1)[-1], g.num_nodes) for g in read_molecules(p)]
        [('w.xyz[0]', 3), ('w.xyz[1]', 4)]
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a directory, not a molecule file")
    if path.lower().endswith(SDF_SUFFIXES):
        from equigraph.data.rdkit_io import read_sdf

        return read_sdf(path, embed=embed, seed=seed, dtype=dtype)

    from equigraph.data.ase_io import read

    graphs = read(path, index=":", dtype=dtype)
    for i, g in enumerate(graphs):
        name = g.name if "name" in g else None
        if not isinstance(name, str) or not name.strip():
            g.name = f"{path}[{i}]"
    drop_uneven_attributes(graphs, path, unit="frame")
    return graphs
