r"""A small periodic energy / force / stress dataset labelled by ASE's effective-medium
theory calculator (:class:`ase.calculators.emt.EMT`, Jacobsen, Stoltze and Nørskov,
`Surf. Sci. 366, 394 (1996) <https://doi.org/10.1016/0039-6028(96)00816-3>`_), for
training and testing energy + force (+ stress) models on a CPU: 1,000 structures label in
seconds, and the forces and stress are the exact derivatives of a real many-body
potential.

Structures (4 to 36 atoms), each drawn from its own random stream:

- ``"bulk"``: fcc crystals, the 4-atom cubic cell repeated ``1x1x1`` to ``2x2x2`` or the
  1-atom primitive cell repeated ``2x2x2`` to ``3x3x3``; ``pbc = (True, True, True)``.
- ``"slab"``: fcc(111) or fcc(100) slabs (:func:`ase.build.fcc111`, :func:`ase.build.fcc100`)
  of 3 or 4 layers, ``2x2`` to ``3x3`` in-plane, with :data:`SLAB_VACUUM` Å of vacuum on
  each side; ``pbc = (True, True, False)``.

Each structure is a pure element or, with probability ``alloy_fraction``, a random
substitutional alloy (a uniform fraction of its sites, at least one, swapped to other
requested elements). The lattice constant is the composition average (Vegard's law) of
EMT's own fcc lattice constants (:func:`lattice_constant`), then the cell is deformed by a
random symmetric strain :math:`\varepsilon` (every component uniform in
``[-strain, strain]``; for slabs only the in-plane block) as
:math:`\mathbf{C} \leftarrow \mathbf{C}(\mathbf{I} + \varepsilon)`, and every atom is
displaced by :math:`\mathcal{N}(0, \texttt{rattle}^2)` per Cartesian component so that the
forces do not vanish by symmetry.

================  ============  ================================================================
key               shape         meaning
================  ============  ================================================================
``z``             ``[N]``       atomic numbers (long)
``pos``           ``[N, 3]``    positions, Å
``cell``          ``[1, 3, 3]`` lattice vectors as rows, Å
``pbc``           ``[1, 3]``    periodicity (bool); slabs are not periodic along the third vector
``energy``        ``[1]``       EMT total energy, eV (each element's ideal fcc crystal at its
                                EMT lattice constant has energy about 0)
``forces``        ``[N, 3]``    :math:`-\partial E / \partial \mathbf{r}`, eV/Å
``stress``        ``[1, 3, 3]`` :math:`\frac{1}{V}\partial E / \partial \varepsilon`, eV/Å^3 (ASE
                                sign: negative under compression); for slabs ``V`` includes
                                the vacuum
``kind``          ``[1]``       index into :data:`KINDS` (0 bulk, 1 slab), long
================  ============  ================================================================

The structures depend only on the seed, the options and their index (structure ``i`` is
drawn from child ``i`` of ``numpy.random.SeedSequence(seed)``), so a smaller
``num_structures`` gives a prefix of a larger one. EMT describes the fcc metals Al, Cu,
Ag, Au, Ni, Pd and Pt; its H, C, N and O parameters are, in ASE's words, "not for any
serious use", and here those elements too sit on fcc sites.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import os.path as osp
from typing import Callable, Sequence

import numpy as np
import torch
from torch_geometric.data import Data, InMemoryDataset

from equigraph.data.ase_io import from_ase

__all__ = ["EMT", "generate_emt_structures", "lattice_constant", "random_split", "default_root",
           "UNITS", "KINDS", "SUPPORTED_ELEMENTS", "SPLIT_FRACTIONS"]

#: Units of the labels.
UNITS = {"energy": "eV", "forces": "eV/Å", "stress": "eV/Å^3"}
#: Structure kinds; a graph's ``kind`` is the index into this tuple.
KINDS = ("bulk", "slab")
#: Elements with EMT parameters in :mod:`ase.calculators.emt` (the metals, then H, C, N, O).
SUPPORTED_ELEMENTS = ("Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt", "H", "C", "N", "O")
#: Fractions of the ``train`` / ``val`` / ``test`` parts of :func:`random_split`.
SPLIT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}
#: Vacuum on each side of a slab, Å; twice this exceeds EMT's neighbour cutoff (about 5.9 Å),
#: so a slab does not interact with its periodic images along the surface normal.
SLAB_VACUUM = 6.0
#: Key of the structure-kind attribute (not in :mod:`equigraph.data.keys`: specific to this set).
KIND = "kind"

# Bumped whenever the generator draws differently, so old caches are not reused.
_GENERATOR_VERSION = 1
_MAX_RATTLE = 0.5
_MAX_STRAIN = 0.1
# (cell, repetitions); the cubic fcc cell has 4 atoms, the primitive one 1.
_BULK_CELLS = (
    ("cubic", (1, 1, 1)), ("cubic", (1, 1, 2)), ("cubic", (1, 2, 2)), ("cubic", (2, 2, 2)),
    ("primitive", (2, 2, 2)), ("primitive", (2, 2, 3)), ("primitive", (2, 3, 3)), ("primitive", (3, 3, 3)),
)
# (facet, (nx, ny, layers)), one atom per site.
_SLAB_CELLS = tuple((facet, size) for facet in ("111", "100")
                    for size in ((2, 2, 3), (2, 2, 4), (3, 3, 3), (3, 3, 4)))


def default_root() -> str:
    """``$EQUIGRAPH_CACHE/emt``, default ``~/.cache/equigraph/emt``."""
    cache = os.environ.get("EQUIGRAPH_CACHE") or osp.join(osp.expanduser("~"), ".cache", "equigraph")
    return osp.join(cache, "emt")


def lattice_constant(symbol: str) -> float:
    r"""EMT's equilibrium fcc lattice constant of ``symbol``, Å:
    :math:`a = \sqrt{2}\,\beta\,s_0` with :math:`s_0` the element's Wigner-Seitz radius in
    ASE's EMT table and :math:`\beta = (16\pi/3)^{1/3}/\sqrt{2}`.

    >>> round(lattice_constant("Cu"), 3), round(lattice_constant("Pt"), 3)
    (3.615, 3.926)
    """
    from ase.calculators.emt import beta, parameters
    from ase.units import Bohr

    if symbol not in parameters:
        raise ValueError(f"elements: EMT has no parameters for {symbol!r}; supported: {list(SUPPORTED_ELEMENTS)}")
    return math.sqrt(2.0) * beta * parameters[symbol][1] * Bohr


# --------------------------------------------------------------------------- validation
def _as_names(value, name: str) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else tuple(value)
    if not items:
        raise ValueError(f"{name}: empty; give at least one")
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{name}: expected strings, got {item!r}")
    return tuple(dict.fromkeys(items))


def _check_options(num: int, elements, rattle: float, strain: float, alloy_fraction: float,
                   kinds, seed: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
        raise ValueError(f"num_structures: expected a positive int, got {num!r}")
    elements = _as_names(elements, "elements")
    for symbol in elements:
        if symbol not in SUPPORTED_ELEMENTS:
            raise ValueError(f"elements: EMT has no parameters for {symbol!r}; "
                             f"supported: {list(SUPPORTED_ELEMENTS)}")
    kinds = _as_names(kinds, "kinds")
    for kind in kinds:
        if kind not in KINDS:
            raise ValueError(f"kinds: unknown kind {kind!r}; known: {list(KINDS)}")
    for name, value, top in (("rattle", rattle, _MAX_RATTLE), ("strain", strain, _MAX_STRAIN),
                             ("alloy_fraction", alloy_fraction, 1.0)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
                or not 0.0 <= float(value) <= top:
            unit = " Å (larger displacements make fcc neighbours overlap)" if name == "rattle" else ""
            raise ValueError(f"{name}: expected a number in [0, {top}]{unit}, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative int, got {seed!r}")
    return elements, kinds


# --------------------------------------------------------------------------- generation
def _structure(rng: np.random.Generator, elements: tuple[str, ...], rattle: float, strain: float,
               alloy_fraction: float, kinds: tuple[str, ...]):
    from ase.build import bulk, fcc100, fcc111

    kind = kinds[rng.integers(len(kinds))]
    table = _BULK_CELLS if kind == "bulk" else _SLAB_CELLS
    variant, size = table[rng.integers(len(table))]
    n = int(np.prod(size)) * (4 if variant == "cubic" else 1)

    host = elements[rng.integers(len(elements))]
    symbols = np.full(n, host, dtype=object)
    others = [e for e in elements if e != host]
    if others and rng.random() < alloy_fraction:
        count = max(1, int(round(rng.random() * n)))
        sites = rng.choice(n, size=count, replace=False)
        symbols[sites] = [others[k] for k in rng.integers(len(others), size=count)]
    a0 = {e: lattice_constant(e) for e in elements}
    a = float(np.mean([a0[s] for s in symbols]))

    if kind == "bulk":
        atoms = bulk(host, "fcc", a=a, cubic=variant == "cubic").repeat(size)
    else:
        build = fcc111 if variant == "111" else fcc100
        atoms = build(host, size=size, a=a, vacuum=SLAB_VACUUM)
        # Layer tags exist only for slabs (a per-atom array on some graphs only cannot be
        # batched), and ASE's adsorbate sites would be stale after the strain and rattle.
        del atoms.arrays["tags"]
        atoms.info.pop("adsorbate_info", None)
    atoms.set_chemical_symbols(list(symbols))

    eps = np.triu(rng.uniform(-strain, strain, size=(3, 3)))
    eps = eps + np.triu(eps, 1).T
    if kind == "slab":
        # The surface normal is the vacuum direction: deforming it only changes the vacuum.
        eps[2, :] = eps[:, 2] = 0.0
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
    atoms.positions += rng.normal(0.0, rattle, size=(n, 3))
    atoms.info[KIND] = kind
    return atoms


def generate_emt_structures(num: int, *, elements: Sequence[str] = ("Cu", "Pt"), rattle: float = 0.05,
                            strain: float = 0.03, alloy_fraction: float = 0.5,
                            kinds: Sequence[str] = KINDS, seed: int = 0) -> list:
    r"""Generate ``num`` bulk / slab structures (see :mod:`equigraph.datasets.emt`) and label
    them with EMT.

    Each returned :class:`ase.Atoms` carries a
    :class:`~ase.calculators.singlepoint.SinglePointCalculator` with ``energy`` (eV),
    ``forces`` (eV/Å) and ``stress`` (eV/Å^3, Voigt order), and ``info["kind"]`` (``"bulk"``
    or ``"slab"``), ready for :func:`ase.io.write` (extxyz) or an ASE database.

    Args:
        num (int): number of structures.
        elements (sequence of str, optional): chemical symbols, a subset of
            :data:`SUPPORTED_ELEMENTS` (default: ``("Cu", "Pt")``).
        rattle (float, optional): standard deviation of the Gaussian displacement of every
            Cartesian coordinate, Å, in ``[0, 0.5]``; with ``0`` bulk forces vanish by
            symmetry (default: ``0.05``).
        strain (float, optional): bound of each component of the random symmetric strain,
            in ``[0, 0.1]`` (default: ``0.03``).
        alloy_fraction (float, optional): probability that a structure is a random
            substitutional alloy of the requested elements; no effect with one element
            (default: ``0.5``).
        kinds (sequence of str, optional): structure kinds to draw from, uniformly, among
            :data:`KINDS` (default: ``("bulk", "slab")``).
        seed (int, optional): non-negative seed (default: ``0``).

    Raises:
        ValueError: an unsupported element or unknown kind (named), ``num < 1``, or an
            option out of range.

    Example:
        >>> atoms = generate_emt_structures(3, seed=1)
        >>> [(a.info["kind"], a.get_chemical_formula()) for a in atoms]
        [('bulk', 'Pt12'), ('slab', 'Cu28Pt8'), ('bulk', 'Cu2Pt6')]
        >>> atoms[1].get_forces().shape, atoms[1].get_stress(voigt=False).shape, atoms[1].pbc.tolist()
        ((36, 3), (3, 3), [True, True, False])
    """
    from ase.calculators.emt import EMT as EMTCalculator
    from ase.calculators.singlepoint import SinglePointCalculator

    elements, kinds = _check_options(num, elements, rattle, strain, alloy_fraction, kinds, seed)
    out = []
    for child in np.random.SeedSequence(int(seed)).spawn(int(num)):
        atoms = _structure(np.random.default_rng(child), elements, float(rattle), float(strain),
                           float(alloy_fraction), kinds)
        atoms.calc = EMTCalculator()
        energy = atoms.get_potential_energy()
        forces = atoms.get_forces()
        stress = atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces, stress=stress)
        out.append(atoms)
    return out


# --------------------------------------------------------------------------- splits
def random_split(num: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Indices ``{"train", "val", "test"}`` of a seeded random permutation of ``num`` items,
    cut by :data:`SPLIT_FRACTIONS` (``val`` and ``test`` get at least one item each).

    >>> [len(v) for v in random_split(20).values()]
    [16, 2, 2]
    """
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 3:
        raise ValueError(f"num: need at least 3 structures to split into train/val/test, got {num!r}")
    n_val = max(1, int(round(SPLIT_FRACTIONS["val"] * num)))
    n_test = max(1, int(round(SPLIT_FRACTIONS["test"] * num)))
    perm = np.random.default_rng(seed).permutation(num)
    parts = np.split(perm, [num - n_val - n_test, num - n_test])
    return {k: torch.from_numpy(p.astype(np.int64)) for k, p in zip(("train", "val", "test"), parts)}


# --------------------------------------------------------------------------- dataset
class EMT(InMemoryDataset):
    r"""Bulk and slab structures of fcc metals and their alloys labelled with energies,
    forces and stress by ASE's EMT calculator, generated on first use (7 to 15 ms per
    structure on one core) and cached; see :mod:`equigraph.datasets.emt` for the
    structures and the keys of each graph (``z``, ``pos``, ``cell``, ``pbc``, ``energy``
    eV, ``forces`` eV/Å, ``stress`` eV/Å^3, ``kind``).

    The processed graphs are stored in ``root/<digest>``, the digest being of every
    generation option, the generator's version and ASE's version.

    Args:
        root (str, optional): cache folder (default: ``$EQUIGRAPH_CACHE/emt``, with
            ``EQUIGRAPH_CACHE`` defaulting to ``~/.cache/equigraph``).
        num_structures (int, optional): number of structures (default: ``1000``).
        elements (sequence of str, optional): chemical symbols among
            :data:`SUPPORTED_ELEMENTS` (default: ``("Cu", "Pt")``).
        rattle (float, optional): Gaussian displacement std per coordinate, Å
            (default: ``0.05``).
        strain (float, optional): bound of the random strain components (default: ``0.03``).
        alloy_fraction (float, optional): probability of a random alloy (default: ``0.5``).
        kinds (sequence of str, optional): among :data:`KINDS` (default: ``("bulk", "slab")``).
        seed (int, optional): seed of the structures and of the split (default: ``0``).
        subset (str, optional): ``"train"``, ``"val"`` or ``"test"`` to expose only that part
            of :meth:`get_split` (80 / 10 / 10 %) (default: :obj:`None`, everything).
        dtype (torch.dtype, optional): floating dtype of the stored tensors
            (default: :obj:`torch.float32`).
        transform, pre_transform, pre_filter (callable, optional): PyG's.
        force_reload (bool, optional): regenerate (default: :obj:`False`).
        log (bool, optional): print progress (default: :obj:`True`).

    Raises:
        ValueError: an unsupported element or unknown kind (named), ``num_structures < 1``,
            an option out of range, an unknown ``subset``, or a non-floating ``dtype``.

    Example:
        >>> import tempfile
        >>> ds = EMT(tempfile.mkdtemp(), num_structures=10, subset="train", log=False)
        >>> len(ds), ds.units["forces"], ds[0].cell.shape, ds[0].stress.shape, ds[0].pbc.shape
        (8, 'eV/Å', torch.Size([1, 3, 3]), torch.Size([1, 3, 3]), torch.Size([1, 3]))
    """

    units = UNITS

    def __init__(self, root: str | os.PathLike | None = None, num_structures: int = 1000, *,
                 elements: Sequence[str] = ("Cu", "Pt"), rattle: float = 0.05, strain: float = 0.03,
                 alloy_fraction: float = 0.5, kinds: Sequence[str] = KINDS, seed: int = 0,
                 subset: str | None = None, dtype: torch.dtype = torch.float32,
                 transform: Callable | None = None, pre_transform: Callable | None = None,
                 pre_filter: Callable | None = None, force_reload: bool = False, log: bool = True):
        self.elements, self.kinds = _check_options(num_structures, elements, rattle, strain,
                                                   alloy_fraction, kinds, seed)
        if subset not in (None, "train", "val", "test"):
            raise ValueError(f"subset: expected 'train', 'val', 'test' or None, got {subset!r}")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"dtype: expected a floating torch.dtype, got {dtype!r}")
        self.num_structures, self.seed, self.subset, self.dtype = int(num_structures), int(seed), subset, dtype
        self.rattle, self.strain, self.alloy_fraction = float(rattle), float(strain), float(alloy_fraction)
        super().__init__(os.fspath(root) if root is not None else default_root(), transform,
                         pre_transform, pre_filter, log=log, force_reload=force_reload)
        self.load(self.processed_paths[0])
        if subset is not None:
            self._indices = self.get_split()[subset].tolist()

    def _options(self) -> dict:
        import ase

        return {"version": _GENERATOR_VERSION, "ase": ase.__version__, "num": self.num_structures,
                "elements": list(self.elements), "rattle": self.rattle, "strain": self.strain,
                "alloy_fraction": self.alloy_fraction, "kinds": list(self.kinds), "seed": self.seed,
                "dtype": str(self.dtype)}

    @property
    def digest(self) -> str:
        """Digest of the generation options, the name of the cache folder under ``root``."""
        return hashlib.sha1(json.dumps(self._options(), sort_keys=True).encode()).hexdigest()[:16]

    @property
    def raw_file_names(self) -> list[str]:
        return []

    @property
    def processed_dir(self) -> str:
        return osp.join(self.root, self.digest)

    @property
    def processed_file_names(self) -> list[str]:
        return ["data.pt"]

    def process(self) -> None:
        atoms_list = generate_emt_structures(
            self.num_structures, elements=self.elements, rattle=self.rattle, strain=self.strain,
            alloy_fraction=self.alloy_fraction, kinds=self.kinds, seed=self.seed)
        data_list = []
        for atoms in atoms_list:
            data: Data = from_ase(atoms, dtype=self.dtype, info=False)
            data[KIND] = torch.tensor([KINDS.index(atoms.info[KIND])], dtype=torch.long)
            data_list.append(data)
        if self.pre_filter is not None:
            data_list = [d for d in data_list if self.pre_filter(d)]
            if not data_list:
                raise ValueError("pre_filter: removed every structure")
        if self.pre_transform is not None:
            data_list = [self.pre_transform(d) for d in data_list]
        self.save(data_list, self.processed_paths[0])

    def get_split(self) -> dict[str, torch.Tensor]:
        """``{"train", "val", "test"}`` indices into all stored structures
        (:func:`random_split` with the dataset's seed)."""
        try:
            return random_split(self.len(), self.seed)
        except ValueError as err:
            raise ValueError(f"subset: {err}") from err

    def __repr__(self) -> str:
        part = f", subset={self.subset!r}" if self.subset else ""
        return f"EMT({len(self)}, elements={list(self.elements)}, kinds={list(self.kinds)}{part})"
