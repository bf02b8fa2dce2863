"""Conversion between :class:`ase.Atoms` and :class:`torch_geometric.data.Data`, and reading
every file format ASE reads (xyz, extxyz, traj, cif, POSCAR, ASE databases, ...).

Units are ASE's: positions and cells in Å, energies in eV, forces in eV/Å, stress in
eV/Å^3 (stored as a full ``[1, 3, 3]`` tensor; ASE's Voigt order is converted).
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Batch, Data

from equigraph.data import keys

__all__ = ["from_ase", "to_ase", "read"]

# Attributes that from_ase derives itself; an info/array entry of the same name is not copied.
_RESERVED = {keys.Z, keys.POS, keys.CELL, keys.PBC, keys.BATCH, "ptr", "num_nodes",
             keys.EDGE_INDEX, keys.SHIFT, keys.EDGE_ATTR, keys.EDGE_VEC}
_GRAPH_RESULTS = {keys.ENERGY, "free_energy", "magmom", "dipole"}
_PER_ATOM_RESULTS = {keys.FORCES, keys.CHARGES, "energies", "magmoms", "stresses"}


def _check_atoms(atoms) -> None:
    from ase import Atoms

    if not isinstance(atoms, Atoms):
        raise TypeError(f"atoms: expected ase.Atoms, got {type(atoms).__name__}")
    if len(atoms) == 0:
        raise ValueError("atoms: the Atoms object is empty (0 atoms)")
    pos = atoms.positions
    bad = np.flatnonzero(~np.isfinite(pos).all(axis=1))
    if bad.size:
        raise ValueError(f"atoms: positions of atoms {bad[:10].tolist()} are not finite (NaN or inf)")
    if not np.isfinite(atoms.cell.array).all():
        raise ValueError("atoms: cell contains NaN or inf")
    if atoms.pbc.any() and abs(np.linalg.det(atoms.cell.array)) < 1e-12:
        raise ValueError(
            f"atoms: cell is singular (volume 0) but pbc={atoms.pbc.tolist()}; give every "
            "lattice vector a length (e.g. atoms.center(vacuum=...)) or set pbc=False"
        )


def _to_tensor(value: Any, dtype: torch.dtype) -> torch.Tensor | None:
    """Numeric value -> tensor (floats in ``dtype``, ints as long, bools as bool);
    ``None`` for anything that is not numeric."""
    arr = np.asarray(value)
    if arr.dtype == bool:
        return torch.from_numpy(arr.copy())
    if np.issubdtype(arr.dtype, np.integer):
        return torch.from_numpy(arr.astype(np.int64))
    if np.issubdtype(arr.dtype, np.floating):
        return torch.from_numpy(arr.astype(np.float64)).to(dtype)
    return None


def _stress_3x3(stress: np.ndarray) -> np.ndarray:
    from ase.stress import voigt_6_to_full_3x3_stress

    stress = np.asarray(stress, dtype=np.float64)
    return voigt_6_to_full_3x3_stress(stress) if stress.shape == (6,) else stress.reshape(3, 3)


def from_ase(atoms, *, dtype: torch.dtype | None = None, info: bool = True, arrays: bool = True) -> Data:
    r"""Convert an :class:`ase.Atoms` to a :class:`~torch_geometric.data.Data`.

    Always sets ``z`` ``[N]`` (long), ``pos`` ``[N, 3]``, ``cell`` ``[1, 3, 3]`` and ``pbc``
    ``[1, 3]`` (bool). Results already held by ``atoms.calc`` (nothing is computed) are
    copied: ``energy`` ``[1]``, ``forces`` ``[N, 3]``, ``stress`` ``[1, 3, 3]`` (from ASE's
    Voigt 6-vector), ``charges`` ``[N]``, and any other result (per-atom results keep
    their ``[N, ...]`` shape, others get a leading dimension of 1). Then, unless disabled,
    numeric and string entries of ``atoms.info`` (graph level, ``[1, ...]``) and extra
    per-atom ``atoms.arrays`` (``[N, ...]``; ``momenta`` become ``vel``, Å/ASE time unit) are
    copied when the calculator did not already provide them.

    Args:
        atoms (ase.Atoms): the structure.
        dtype (torch.dtype, optional): floating dtype of the tensors
            (default: :obj:`torch.get_default_dtype()`).
        info (bool, optional): copy ``atoms.info`` entries (default: :obj:`True`).
        arrays (bool, optional): copy extra ``atoms.arrays`` (default: :obj:`True`).

    Raises:
        TypeError: ``atoms`` is not an ``ase.Atoms``.
        ValueError: no atoms, non-finite positions or cell, or a singular cell with
            periodic boundary conditions.

    Example:
        >>> from ase.build import molecule
        >>> data = from_ase(molecule("H2O"))
        >>> data.z.tolist(), tuple(data.pos.shape), tuple(data.cell.shape), data.pbc.tolist()
        ([8, 1, 1], (3, 3), (1, 3, 3), [[False, False, False]])
    """
    _check_atoms(atoms)
    dtype = dtype or torch.get_default_dtype()
    n = len(atoms)
    data = Data(
        z=torch.from_numpy(atoms.numbers.astype(np.int64)),
        pos=torch.from_numpy(atoms.positions.astype(np.float64)).to(dtype),
        cell=torch.from_numpy(atoms.cell.array.astype(np.float64)).to(dtype).unsqueeze(0),
        pbc=torch.from_numpy(atoms.pbc.copy()).view(1, 3),
    )

    def put(name: str, value: Any, per_atom: bool | None = None) -> None:
        if name in _RESERVED or name in data:
            return
        if isinstance(value, str):
            data[name] = value
            return
        if name == keys.STRESS:
            value = _stress_3x3(value)[None]
        t = _to_tensor(value, dtype)
        if t is None:
            return
        if per_atom is None:
            per_atom = name not in _GRAPH_RESULTS and t.dim() >= 1 and t.shape[0] == n
        if not per_atom and name != keys.STRESS:
            t = t.reshape(1, *t.shape)
        if name == keys.ENERGY or name == "free_energy":
            t = t.reshape(1)
        data[name] = t

    if atoms.calc is not None:
        for name, value in getattr(atoms.calc, "results", {}).items():
            put(name, value)
    if arrays:
        if "momenta" in atoms.arrays:
            put(keys.VEL, atoms.get_velocities(), per_atom=True)
        for name, value in atoms.arrays.items():
            if name not in ("numbers", "positions", "momenta"):
                put(name, value, per_atom=True)
    if info:
        for name, value in atoms.info.items():
            put(name, value, per_atom=False)
    return data


def _single_graph(data: Data, index: int | None) -> Data:
    if isinstance(data, Batch):
        if index is None:
            if data.num_graphs != 1:
                raise ValueError(
                    f"data: a Batch of {data.num_graphs} graphs; pass index= to pick one graph"
                )
            index = 0
        if not -data.num_graphs <= index < data.num_graphs:
            raise ValueError(f"index: {index} is out of range for a Batch of {data.num_graphs} graphs")
        return data.get_example(index)
    if index not in (None, 0, -1):
        raise ValueError(f"index: {index} given but data is a single graph, not a Batch")
    return data


def to_ase(data: Data, index: int | None = None):
    r"""Convert a :class:`~torch_geometric.data.Data` (or graph ``index`` of a
    :class:`~torch_geometric.data.Batch`) back to an :class:`ase.Atoms`.

    ``z``, ``pos``, ``cell``, ``pbc`` and ``vel`` become the atoms' numbers, positions,
    cell, pbc and velocities; ``energy``, ``forces``, ``stress`` (back to Voigt), ``charges``
    and any other ASE calculator property are attached through a
    :class:`~ase.calculators.singlepoint.SinglePointCalculator`; remaining node-level tensors
    go to ``atoms.arrays`` and graph-level tensors and strings to ``atoms.info``. Edge-level
    attributes (``edge_index``, ``shift``, ...) are dropped. ``from_ase(to_ase(d))``
    reproduces ``d`` for data made by :func:`from_ase`.

    Args:
        data (Data or Batch): the graph(s); needs ``z`` and ``pos``.
        index (int, optional): which graph of a Batch to convert; required when the
            Batch holds more than one graph (default: :obj:`None`).

    Example:
        >>> from ase.build import molecule
        >>> to_ase(from_ase(molecule("CH4"))).get_chemical_formula()
        'CH4'
    """
    from ase import Atoms
    from ase.calculators.calculator import all_properties
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.stress import full_3x3_to_voigt_6_stress

    if not isinstance(data, Data):
        raise TypeError(f"data: expected a torch_geometric Data or Batch, got {type(data).__name__}")
    data = _single_graph(data, index)
    for key in (keys.Z, keys.POS):
        if key not in data:
            raise ValueError(f"data: has no {key!r} attribute, needed to build ase.Atoms")
    z = data[keys.Z].detach().cpu().numpy().astype(int)
    pos = data[keys.POS].detach().cpu().double().numpy()
    if pos.shape != (len(z), 3):
        raise ValueError(f"data: pos has shape {tuple(pos.shape)}, expected ({len(z)}, 3) to match z")
    cell = data[keys.CELL].detach().cpu().double().numpy().reshape(3, 3) if keys.CELL in data else None
    pbc = data[keys.PBC].detach().cpu().numpy().reshape(3) if keys.PBC in data else False
    atoms = Atoms(numbers=z, positions=pos, cell=cell, pbc=pbc)
    if keys.VEL in data:
        atoms.set_velocities(data[keys.VEL].detach().cpu().double().numpy())

    n = len(z)
    handled = {keys.Z, keys.POS, keys.CELL, keys.PBC, keys.VEL, keys.BATCH, "ptr"}
    results = {}
    for key, value in data.items():
        if key in handled or key in keys.EDGE_KEYS:
            continue
        if isinstance(value, str):
            atoms.info[key] = value
            continue
        if not isinstance(value, torch.Tensor):
            continue
        arr = value.detach().cpu().numpy()
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float64)
        if key in all_properties:
            if key == keys.STRESS:
                arr = full_3x3_to_voigt_6_stress(arr.reshape(3, 3))
            elif key in (keys.ENERGY, "free_energy", "magmom"):
                arr = float(arr.reshape(-1)[0])
            elif key not in _PER_ATOM_RESULTS and arr.ndim >= 1 and arr.shape[0] == 1:
                arr = arr[0]
            results[key] = arr
        elif arr.ndim >= 1 and arr.shape[0] == n and data.is_node_attr(key):
            atoms.set_array(key, arr)
        elif arr.ndim >= 1 and arr.shape[0] == 1:
            arr = arr[0]
            atoms.info[key] = arr.item() if arr.ndim == 0 else arr
    if results:
        atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def read(path: str | os.PathLike, index: int | str | slice = ":", format: str | None = None,
         *, dtype: torch.dtype | None = None, **kwargs) -> Data | list[Data]:
    r"""Read structures from any file :func:`ase.io.read` reads (xyz, extxyz, traj, cif,
    POSCAR, ASE ``.db``, ...) as :class:`~torch_geometric.data.Data` via :func:`from_ase`.

    Args:
        path (str or PathLike): the file.
        index (int, str or slice, optional): which frames, with ASE's meaning: an int gives
            one :class:`Data`, ``":"`` or a slice gives a list (default: :obj:`":"`).
        format (str, optional): ASE format name; guessed from the file when :obj:`None`
            (default: :obj:`None`).
        dtype (torch.dtype, optional): floating dtype (default: torch's default dtype).
        **kwargs: passed to :func:`ase.io.read`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file cannot be parsed (for XYZ files, with the line number of
            the first malformed line or unknown element), ASE does not know its format, a
            structure is invalid (non-finite positions, ...: named by its frame index) or
            none is selected.

    Example:
        >>> import os, tempfile
        >>> from ase.build import molecule
        >>> from ase.io import write
        >>> p = os.path.join(tempfile.mkdtemp(), "w.xyz")
        >>> write(p, [molecule("H2O"), molecule("NH3")])
        >>> [d.num_nodes for d in read(p)]
        [3, 4]
    """
    import ase.io
    from ase.io.formats import filetype

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"path: {path!r} does not exist")
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise ValueError(f"path: {path!r} is empty")
    try:
        fmt = format or filetype(path, guess=True)
    except Exception as err:  # ASE raises several unrelated types for unknown formats
        raise ValueError(f"path: cannot tell the format of {path!r}; pass format= ({err})") from err
    try:
        result = ase.io.read(path, index=index, format=fmt, **kwargs)
    except Exception as err:
        from ase.io.formats import UnknownFileTypeError

        if isinstance(err, UnknownFileTypeError):
            raise ValueError(
                f"{path}: ASE cannot read this format ({fmt!r}); pass format= one of "
                "ase.io.formats.ioformats, or convert the file"
            ) from err
        if fmt in ("xyz", "extxyz"):
            from equigraph.data.xyz import check_xyz

            check_xyz(path)
        raise ValueError(f"{path}: ASE could not read it as {fmt!r}: {type(err).__name__}: {err}") from err
    frames = result if isinstance(result, list) else [result]
    if not frames:
        raise ValueError(f"{path}: no structures selected by index={index!r}")
    out = []
    for i, atoms in enumerate(frames):
        try:
            out.append(from_ase(atoms, dtype=dtype))
        except ValueError as err:
            if isinstance(index, int):
                where = f"frame {index}"
            elif index == ":":
                where = f"frame {i}"
            else:
                where = f"structure {i} of index={index!r}"
            raise ValueError(f"{path}: {where}: {err}") from err
    return out if isinstance(result, list) else out[0]
