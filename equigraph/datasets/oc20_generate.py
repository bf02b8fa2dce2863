r"""OC20-like data labelled by ASE's EMT calculator, written in OC20's own file formats, so
that the OC20 readers (:class:`equigraph.datasets.OC20`) are exercised on real layouts and
models can be trained and benchmarked without the (unavailable) OC20 download.

Each *system* is an adsorbate on a metal slab, relaxed like an OC20 DFT relaxation:

- a slab of one of :data:`METALS` (the fcc metals EMT describes) at its EMT lattice
  constant, facet (111), (100) or (211) (:func:`ase.build.fcc111`, ``fcc100``, ``fcc211``;
  2x2x3 and 3x2x3 atoms), :data:`VACUUM` Å of vacuum on each side, periodic in all three
  directions (as OC20's cells are);
- an adsorbate of :data:`ADSORBATES` (O, H, N, C, OH, CO) placed 1.5 to 2.2 Å above the
  topmost slab atom, laterally within 1.3 Å of a random surface atom, binding atom first,
  and lifted until every adsorbate-slab distance is at least :data:`MIN_CONTACT` Å;
- OC20's tags and constraints: slab atoms in the lower 60 % of the slab height are
  subsurface, tag 0, fixed (:class:`ase.constraints.FixAtoms`); the other slab atoms are
  surface, tag 1; adsorbate atoms tag 2;
- free slab atoms rattled by 0.03 Å, then relaxed with an ASE optimiser (BFGS or FIRE) to
  ``fmax`` or for at most ``max_steps`` steps. Every visited structure is an S2EF frame
  (energy, and the forces on *all* atoms, fixed ones included, as in OC20); the first and
  last give the IS2RE pair.

Energies are adsorption energies as in OC20, :math:`E_\mathrm{ads} = E_\mathrm{sys} -
E_\mathrm{slab} - \sum_a E_a`: the clean slab of the same metal and facet relaxed the same
way, and isolated-atom EMT energies of the adsorbate's elements (OC20 references gas-phase
molecules; EMT's H, C, N, O parameters are, in ASE's words, "not for any serious use").

Written layouts (:func:`generate_oc20_emt`), systems split 80/10/10 into train / val / test:

- ``s2ef/{split}/data.NNNN.lmdb`` and ``is2re/{split}/data.lmdb``: fairchem's LMDB layout
  (keys ``b"0"``, ``b"1"``, ... and a pickled ``b"length"``; records are PyG ``Data`` with
  OC20's keys ``atomic_numbers`` (float), ``pos``, ``cell``, ``natoms``, ``tags``, ``fixed``
  (float), ``sid``, ``fid``, ``y``, ``force`` / ``y_init``, ``y_relaxed``,
  ``pos_relaxed``). IS2RE and the second S2EF train shard are pickled the way PyG 1.x
  pickled ``Data`` (attributes in ``__dict__``, no ``_store``), like OC20's original files.
- ``s2ef_extxyz/{split}/K.extxyz`` + ``K.txt``: OC20's S2EF download layout, total energies
  in the frames and ``random<sid>,frame<fid>,<reference energy>`` per frame in the log.
- ``s2ef_ase/{split}.db``: an ASE SQLite database, total energies with the key
  ``ref_energy``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Union

import numpy as np
import torch

__all__ = ["METALS", "FACETS", "ADSORBATES", "VACUUM", "OC20System", "generate_systems", "s2ef_record",
           "is2re_record", "frame_atoms", "write_lmdb", "write_s2ef_extxyz", "write_ase_db", "generate_oc20_emt",
           "default_root"]

#: Slab metals (EMT's fcc metals).
METALS = ("Cu", "Ag", "Au", "Ni", "Pd", "Pt", "Al")
#: Facets and the slab size (in-plane repetitions and layers) of each.
FACETS = {"111": (2, 2, 3), "100": (2, 2, 3), "211": (3, 2, 3)}
#: Adsorbates: symbols and positions relative to the binding atom (first), Å.
ADSORBATES = {
    "O": ("O", [(0.0, 0.0, 0.0)]),
    "H": ("H", [(0.0, 0.0, 0.0)]),
    "N": ("N", [(0.0, 0.0, 0.0)]),
    "C": ("C", [(0.0, 0.0, 0.0)]),
    "OH": ("OH", [(0.0, 0.0, 0.0), (0.0, 0.0, 0.97)]),
    "CO": ("CO", [(0.0, 0.0, 0.0), (0.0, 0.0, 1.14)]),
}
#: Vacuum on each side of the slab, Å: the gap between periodic images along z exceeds
#: EMT's interaction range and the usual model cutoffs (<= 6 Å) with the adsorbate on top.
VACUUM = 7.5
#: Fraction of the slab height below which slab atoms are subsurface (tag 0, fixed).
FIXED_FRACTION = 0.6
#: Smallest initial distance between an adsorbate atom and a slab atom, Å.
MIN_CONTACT = 1.8
OPTIMIZERS = ("BFGS", "FIRE")
# Bumped whenever the generator draws or writes differently, so old caches are not reused.
_VERSION = 2
_RATTLE = 0.03
_MANIFEST = "manifest.json"
_FORMAT_DIRS = {"lmdb": ("s2ef", "is2re"), "extxyz": ("s2ef_extxyz",), "ase": ("s2ef_ase",)}


def default_root() -> str:
    """``$EQUIGRAPH_CACHE/oc20_emt``, default ``~/.cache/equigraph/oc20_emt``."""
    cache = os.environ.get("EQUIGRAPH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "equigraph")
    return os.path.join(cache, "oc20_emt")


@dataclass
class OC20System:
    """One relaxation: ``T`` frames of ``N`` atoms; total EMT energies (eV) and forces on
    every atom (eV/Å); ``reference_energy`` (eV) turns them into adsorption energies."""

    sid: int
    metal: str
    facet: str
    adsorbate: str
    numbers: np.ndarray          # [N]
    cell: np.ndarray             # [3, 3]
    tags: np.ndarray             # [N]
    fixed: np.ndarray            # [N] bool
    positions: np.ndarray        # [T, N, 3]
    energies: np.ndarray         # [T]
    forces: np.ndarray           # [T, N, 3]
    reference_energy: float
    converged: bool

    @property
    def num_frames(self) -> int:
        return int(self.energies.shape[0])


# --------------------------------------------------------------------------- generation
def _check(num_systems, metals, facets, adsorbates, max_steps, fmax, optimizer, seed):
    if isinstance(num_systems, bool) or not isinstance(num_systems, int) or num_systems < 1:
        raise ValueError(f"num_systems: expected a positive int, got {num_systems!r}")
    for name, values, known in (("metals", metals, METALS), ("facets", facets, tuple(FACETS)),
                                ("adsorbates", adsorbates, tuple(ADSORBATES))):
        if isinstance(values, str) or not values:
            raise ValueError(f"{name}: expected a non-empty list among {list(known)}, got {values!r}")
        for v in values:
            if v not in known:
                raise ValueError(f"{name}: unknown {v!r}; known: {list(known)}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 0:
        raise ValueError(f"max_steps: expected a non-negative int, got {max_steps!r}")
    if isinstance(fmax, bool) or not isinstance(fmax, (int, float)) or not fmax > 0 or not math.isfinite(fmax):
        raise ValueError(f"fmax: expected a positive number (eV/Å), got {fmax!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, got {optimizer!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: expected a non-negative int, got {seed!r}")


def _slab(metal: str, facet: str):
    from ase.build import fcc100, fcc111, fcc211
    from ase.constraints import FixAtoms

    from equigraph.datasets.emt import lattice_constant

    build = {"111": fcc111, "100": fcc100, "211": fcc211}[facet]
    slab = build(metal, size=FACETS[facet], a=lattice_constant(metal), vacuum=VACUUM)
    slab.info.pop("adsorbate_info", None)
    slab.pbc = True
    z = slab.positions[:, 2]
    sub = z < z.min() + FIXED_FRACTION * (z.max() - z.min())
    slab.set_tags(np.where(sub, 0, 1))
    slab.set_constraint(FixAtoms(mask=sub))
    return slab


def _relax(atoms, optimizer: str, fmax: float, max_steps: int):
    """Frames ``(positions, energy, forces on all atoms)`` of a relaxation, and whether it
    reached ``fmax``."""
    from ase.calculators.emt import EMT
    from ase.optimize import BFGS, FIRE

    atoms.calc = EMT()
    frames = []

    def record():
        frames.append((atoms.positions.copy(), float(atoms.get_potential_energy()),
                       atoms.get_forces(apply_constraint=False).copy()))

    opt = (BFGS if optimizer == "BFGS" else FIRE)(atoms, logfile=None, maxstep=0.2)
    opt.attach(record)
    converged = bool(opt.run(fmax=fmax, steps=max_steps))
    if not frames:  # max_steps=0: the observer may not run
        record()
    return frames, converged


def _isolated_atom_energy(symbol: str) -> float:
    from ase import Atoms
    from ase.calculators.emt import EMT

    atom = Atoms(symbol, positions=[(0.0, 0.0, 0.0)], cell=[20.0, 20.0, 20.0], pbc=False)
    atom.calc = EMT()
    return float(atom.get_potential_energy())


def generate_systems(num_systems: int, *, seed: int = 0, metals: Sequence[str] = METALS,
                     facets: Sequence[str] = tuple(FACETS), adsorbates: Sequence[str] = tuple(ADSORBATES),
                     max_steps: int = 20, fmax: float = 0.05, optimizer: str = "BFGS") -> List[OC20System]:
    """Relax ``num_systems`` adsorbate + slab systems with EMT (see the module docstring).

    System ``i`` is drawn from child ``i`` of ``numpy.random.SeedSequence(seed)``, so fewer
    systems give a prefix of more. Clean-slab references are relaxed once per (metal,
    facet).

    Example:
        >>> systems = generate_systems(2, max_steps=3)
        >>> [(s.metal, s.facet, s.adsorbate, s.num_frames) for s in systems]
        [('Pt', '211', 'O', 4), ('Pd', '211', 'N', 4)]
    """
    from ase import Atoms
    from ase.constraints import FixAtoms
    from ase.geometry import get_distances

    _check(num_systems, metals, facets, adsorbates, max_steps, fmax, optimizer, seed)
    slab_energy: Dict[tuple, float] = {}
    atom_energy: Dict[str, float] = {}
    out = []
    for i, child in enumerate(np.random.SeedSequence(seed).spawn(num_systems)):
        rng = np.random.default_rng(child)
        metal = metals[rng.integers(len(metals))]
        facet = facets[rng.integers(len(facets))]
        name = adsorbates[rng.integers(len(adsorbates))]
        if (metal, facet) not in slab_energy:
            frames, _ = _relax(_slab(metal, facet), optimizer, fmax, max(max_steps, 1) * 2)
            slab_energy[(metal, facet)] = frames[-1][1]
        symbols, rel = ADSORBATES[name]
        for s in Atoms(symbols).get_chemical_symbols():
            if s not in atom_energy:
                atom_energy[s] = _isolated_atom_energy(s)

        slab = _slab(metal, facet)
        z = slab.positions[:, 2]
        surface = np.flatnonzero(z > z.max() - 0.5)
        site = slab.positions[surface[rng.integers(len(surface))]]
        angle, radius = rng.uniform(0, 2 * math.pi), rng.uniform(0.0, 1.3)
        anchor = np.array([site[0] + radius * math.cos(angle), site[1] + radius * math.sin(angle),
                           z.max() + rng.uniform(1.5, 2.2)])
        ads = Atoms(symbols, positions=np.asarray(rel) + anchor, tags=[2] * len(rel))
        # Lift it until no slab atom is closer than MIN_CONTACT: a start inside the metal's
        # repulsive core would give forces of tens of eV/Å, which relaxations never visit.
        while get_distances(ads.positions, slab.positions, cell=slab.cell, pbc=True)[1].min() < MIN_CONTACT:
            ads.positions[:, 2] += 0.1
        fixed = np.zeros(len(slab), dtype=bool)
        fixed[slab.constraints[0].get_indices()] = True
        slab.positions[~fixed] += rng.normal(0.0, _RATTLE, size=(int((~fixed).sum()), 3))
        system = slab + ads
        all_fixed = np.concatenate([fixed, np.zeros(len(ads), dtype=bool)])
        system.set_constraint(FixAtoms(mask=all_fixed))
        system.pbc = True
        frames, converged = _relax(system, optimizer, fmax, max_steps)
        reference = slab_energy[(metal, facet)] + sum(atom_energy[s] for s in ads.get_chemical_symbols())
        out.append(OC20System(
            sid=i, metal=metal, facet=facet, adsorbate=name, numbers=system.numbers.copy(),
            cell=system.cell.array.copy(), tags=system.get_tags().copy(), fixed=all_fixed,
            positions=np.stack([f[0] for f in frames]), energies=np.array([f[1] for f in frames]),
            forces=np.stack([f[2] for f in frames]), reference_energy=float(reference), converged=converged))
    return out


# --------------------------------------------------------------------------- records
def _f32(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=torch.float32)


def _common(system: OC20System, t: int) -> dict:
    return {
        "atomic_numbers": _f32(system.numbers),
        "pos": _f32(system.positions[t]),
        "cell": _f32(system.cell).view(1, 3, 3),
        "natoms": int(len(system.numbers)),
        "tags": torch.as_tensor(system.tags, dtype=torch.long),
        "fixed": _f32(system.fixed.astype(np.float32)),
        "sid": int(system.sid),
    }


def s2ef_record(system: OC20System, t: int) -> dict:
    """Frame ``t`` as an OC20 S2EF record: fairchem's ``AtomsToGraphs`` keys with the
    reference energy subtracted from ``y``."""
    rec = _common(system, t)
    rec.update(fid=int(t), y=float(system.energies[t] - system.reference_energy), force=_f32(system.forces[t]))
    return rec


def is2re_record(system: OC20System) -> dict:
    """The system as an OC20 IS2RE record: initial ``pos``, ``y_init``, ``y_relaxed``,
    ``pos_relaxed``."""
    rec = _common(system, 0)
    rec.update(y_init=float(system.energies[0] - system.reference_energy),
               y_relaxed=float(system.energies[-1] - system.reference_energy),
               pos_relaxed=_f32(system.positions[-1]))
    return rec


def frame_atoms(system: OC20System, t: int):
    """Frame ``t`` as :class:`ase.Atoms` with its *total* energy and forces
    (:class:`~ase.calculators.singlepoint.SinglePointCalculator`), tags and ``FixAtoms``."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.constraints import FixAtoms

    atoms = Atoms(numbers=system.numbers, positions=system.positions[t], cell=system.cell, pbc=True,
                  tags=system.tags)
    atoms.set_constraint(FixAtoms(mask=system.fixed))
    atoms.calc = SinglePointCalculator(atoms, energy=float(system.energies[t]), forces=system.forces[t])
    return atoms


# --------------------------------------------------------------------------- writers
def _pickle_record(record: dict, style: str) -> bytes:
    from torch_geometric.data import Data

    if style == "dict":
        obj = dict(record)
    elif style == "current":
        obj = Data(**record)
    elif style == "old":
        # What PyG 1.x pickled: the attributes (unset ones as None) directly in __dict__.
        obj = Data.__new__(Data)
        state = {"x": None, "edge_index": None, "edge_attr": None, "y": None, "pos": None, "normal": None,
                 "face": None, "__num_nodes__": None}
        state.update(record)
        obj.__dict__.update(state)
    else:
        raise ValueError(f"style: expected 'current', 'old' or 'dict', got {style!r}")
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def write_lmdb(path: Union[str, os.PathLike], records: Iterable[dict], *, style: str = "current",
               length_key: bool = True) -> Path:
    """Write ``records`` as fairchem's LMDB: one file (``subdir=False``), record ``i`` under
    the ASCII key ``str(i)``, pickled as a current PyG ``Data`` (``style="current"``), the
    way PyG 1.x pickled it (``"old"``) or as a dict (``"dict"``), and the pickled count
    under ``b"length"`` (``length_key``)."""
    import lmdb

    blobs = [_pickle_record(r, style) for r in records]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    map_size = max(1 << 20, 2 * sum(len(b) for b in blobs) + (1 << 20))
    env = lmdb.open(str(path), map_size=map_size, subdir=False, meminit=False, map_async=True)
    try:
        with env.begin(write=True) as txn:
            for i, blob in enumerate(blobs):
                txn.put(str(i).encode("ascii"), blob)
            if length_key:
                txn.put(b"length", pickle.dumps(len(blobs), protocol=pickle.HIGHEST_PROTOCOL))
        env.sync()
    finally:
        env.close()
    lock = Path(str(path) + "-lock")
    if lock.exists():
        lock.unlink()
    return path


def write_s2ef_extxyz(folder: Union[str, os.PathLike], systems: Sequence[OC20System],
                      systems_per_file: int = 4) -> List[Path]:
    """Write every frame of ``systems`` in OC20's S2EF layout: ``K.extxyz`` (total energies,
    forces, tags, fixed atoms as ``move_mask``) and ``K.txt`` (``random<sid>,frame<fid>,
    <reference energy>`` per frame), ``systems_per_file`` systems per file."""
    from ase.io import write

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, start in enumerate(range(0, len(systems), systems_per_file)):
        chunk = systems[start:start + systems_per_file]
        frames, lines = [], []
        for s in chunk:
            for t in range(s.num_frames):
                frames.append(frame_atoms(s, t))
                lines.append(f"random{s.sid},frame{t},{s.reference_energy!r}")
        path = folder / f"{k}.extxyz"
        write(path, frames, format="extxyz")
        (folder / f"{k}.txt").write_text("\n".join(lines) + "\n")
        paths.append(path)
    return paths


def write_ase_db(path: Union[str, os.PathLike], systems: Sequence[OC20System]) -> Path:
    """Write every frame of ``systems`` to an ASE database (total energies; keys ``sid``,
    ``fid``, ``ref_energy``)."""
    import ase.db

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with ase.db.connect(str(path), append=False) as db:
        for s in systems:
            for t in range(s.num_frames):
                db.write(frame_atoms(s, t), sid=int(s.sid), fid=int(t), ref_energy=float(s.reference_energy))
    return path


# --------------------------------------------------------------------------- cache
def _split(systems: List[OC20System], seed: int) -> Dict[str, List[OC20System]]:
    from equigraph.datasets.emt import random_split

    if len(systems) < 3:
        raise ValueError(f"num_systems: need at least 3 systems for train/val/test, got {len(systems)}")
    return {name: [systems[i] for i in idx.tolist()] for name, idx in random_split(len(systems), seed).items()}


def _write_format(folder: Path, fmt: str, splits: Dict[str, List[OC20System]]) -> None:
    for sub in _FORMAT_DIRS[fmt]:
        final = folder / sub
        if final.exists():
            continue
        tmp = folder / f".tmp-{sub}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        for split, systems in splits.items():
            if sub == "s2ef":
                # Two train shards: the second pickled like PyG 1.x, as in OC20's older files.
                halves = [systems[: (len(systems) + 1) // 2], systems[(len(systems) + 1) // 2:]] \
                    if split == "train" and len(systems) > 1 else [systems]
                for k, part in enumerate(halves):
                    write_lmdb(tmp / split / f"data.{k:04d}.lmdb",
                               (s2ef_record(s, t) for s in part for t in range(s.num_frames)),
                               style="old" if k == 1 else "current")
            elif sub == "is2re":
                write_lmdb(tmp / split / "data.lmdb", (is2re_record(s) for s in systems), style="old")
            elif sub == "s2ef_extxyz":
                write_s2ef_extxyz(tmp / split, systems)
            else:
                write_ase_db(tmp / f"{split}.db", systems)
        try:
            os.rename(tmp, final)
        except OSError:  # another process wrote it first
            shutil.rmtree(tmp, ignore_errors=True)


def generate_oc20_emt(root: Union[str, os.PathLike, None] = None, num_systems: int = 60, *, seed: int = 0,
                      max_steps: int = 20, fmax: float = 0.05, optimizer: str = "BFGS",
                      metals: Sequence[str] = METALS, facets: Sequence[str] = tuple(FACETS),
                      adsorbates: Sequence[str] = tuple(ADSORBATES),
                      formats: Sequence[str] = ("lmdb", "extxyz", "ase")) -> Path:
    """Generate (once) and write the OC20-like EMT data; returns its folder
    ``root/<digest>`` (the digest of every generation option, the generator's version and
    ASE's), holding the layouts of the module docstring for ``formats`` and
    ``manifest.json`` (options, system ids per split, frame counts, the fraction of
    relaxations that reached ``fmax``, generation time).

    The relaxed systems are cached in ``systems.pkl``, so asking later for another format
    only writes it.

    Example:
        >>> import tempfile
        >>> folder = generate_oc20_emt(tempfile.mkdtemp(), num_systems=3, max_steps=2, formats=("lmdb",))
        >>> sorted(p.name for p in (folder / "s2ef").iterdir())
        ['test', 'train', 'val']
    """
    import ase

    for fmt in formats:
        if fmt not in _FORMAT_DIRS:
            raise ValueError(f"formats: unknown {fmt!r}; known: {list(_FORMAT_DIRS)}")
    metals, facets, adsorbates = tuple(metals), tuple(facets), tuple(adsorbates)
    _check(num_systems, metals, facets, adsorbates, max_steps, fmax, optimizer, seed)
    if num_systems < 3:
        raise ValueError(f"num_systems: need at least 3 systems for train/val/test, got {num_systems}")
    options = {"version": _VERSION, "ase": ase.__version__, "num_systems": num_systems, "seed": seed,
               "max_steps": max_steps, "fmax": float(fmax), "optimizer": optimizer, "metals": list(metals),
               "facets": list(facets), "adsorbates": list(adsorbates)}
    digest = hashlib.sha1(json.dumps(options, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(os.fspath(root) if root is not None else default_root()).expanduser() / digest
    folder.mkdir(parents=True, exist_ok=True)
    cache = folder / "systems.pkl"
    seconds = None
    if cache.is_file():
        systems = pickle.loads(cache.read_bytes())
    else:
        start = time.perf_counter()
        systems = generate_systems(num_systems, seed=seed, metals=metals, facets=facets, adsorbates=adsorbates,
                                   max_steps=max_steps, fmax=fmax, optimizer=optimizer)
        seconds = time.perf_counter() - start
        tmp = folder / f".systems-{os.getpid()}.pkl"
        tmp.write_bytes(pickle.dumps(systems, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(tmp, cache)
    splits = _split(systems, seed)
    for fmt in formats:
        _write_format(folder, fmt, splits)
    manifest_path = folder / _MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest.update({
        "options": options,
        "sids": {k: [s.sid for s in v] for k, v in splits.items()},
        "frames": {k: int(sum(s.num_frames for s in v)) for k, v in splits.items()},
        "converged_fraction": float(np.mean([s.converged for s in systems])),
        "formats": sorted({*manifest.get("formats", []), *formats}),
    })
    if seconds is not None:
        manifest["generation_seconds"] = seconds
    tmp = folder / f".{_MANIFEST}-{os.getpid()}"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, manifest_path)
    return folder
