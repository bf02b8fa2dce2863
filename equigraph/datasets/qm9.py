r"""QM9 (Ramakrishnan et al., *Sci. Data* 2014, https://doi.org/10.1038/sdata.2014.22):
130,831 small organic molecules (H, C, N, O, F; up to 29 atoms) with B3LYP/6-31G(2df,p)
geometries and properties.

:data:`TARGETS` is the one table of QM9 targets in equigraph: names, units and conversion
factors from the raw data. The splits are named options in :data:`SPLITS`.
"""
from __future__ import annotations

import os
import os.path as osp
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch_geometric.data import Data, InMemoryDataset

from equigraph.data import keys
from equigraph.datasets import qm9_raw
from equigraph.datasets.qm9_raw import RAW_COLUMNS, QM9Raw

__all__ = ["QM9", "QM9Target", "TARGETS", "TARGET_NAMES", "ATOMREF_HARTREE", "SPLITS",
           "HARTREE_TO_MEV", "HARTREE_TO_EV", "split_indices", "target_index", "default_root"]

#: CODATA 2018 Hartree energy in eV.
HARTREE_TO_EV = 27.211386245988
HARTREE_TO_MEV = 1000.0 * HARTREE_TO_EV

#: Energies of the isolated atoms, Hartree, from QM9's ``atomref.txt`` (same level of
#: theory): ``{Z: (U0, U(298.15 K), H(298.15 K), G(298.15 K))}``.
ATOMREF_HARTREE = {
    1: (-0.500273, -0.498857, -0.497912, -0.510927),
    6: (-37.846772, -37.845355, -37.844411, -37.861317),
    7: (-54.583861, -54.582445, -54.581501, -54.598897),
    8: (-75.064579, -75.063162, -75.062219, -75.079532),
    9: (-99.718730, -99.717314, -99.716370, -99.733544),
}


@dataclass(frozen=True)
class QM9Target:
    """One column of ``QM9.y``: ``y = (raw - sum of atom references) * factor``.

    Attributes:
        name: the target's name (a column of ``y``).
        unit: unit of ``y``.
        raw: the raw column (:data:`equigraph.datasets.qm9_raw.RAW_COLUMNS`).
        raw_unit: its unit in the raw data.
        factor: raw unit -> ``unit``.
        atomref: column of :data:`ATOMREF_HARTREE` subtracted (atomisation energy), or
            ``None``.
        description: what it is.
    """

    name: str
    unit: str
    raw: str
    raw_unit: str
    factor: float
    atomref: int | None
    description: str


#: The 12 standard targets (units of EGNN / Cormorant / DimeNet tables; energies in meV,
#: U0/U/H/G as atomisation energies) then the raw total energies in eV.
TARGETS: tuple[QM9Target, ...] = (
    QM9Target("mu", "D", "mu", "D", 1.0, None, "dipole moment"),
    QM9Target("alpha", "a0^3", "alpha", "a0^3", 1.0, None, "isotropic polarisability"),
    QM9Target("homo", "meV", "homo", "Ha", HARTREE_TO_MEV, None, "HOMO energy"),
    QM9Target("lumo", "meV", "lumo", "Ha", HARTREE_TO_MEV, None, "LUMO energy"),
    QM9Target("gap", "meV", "gap", "Ha", HARTREE_TO_MEV, None, "HOMO-LUMO gap"),
    QM9Target("r2", "a0^2", "r2", "a0^2", 1.0, None, "electronic spatial extent <R^2>"),
    QM9Target("zpve", "meV", "zpve", "Ha", HARTREE_TO_MEV, None, "zero-point vibrational energy"),
    QM9Target("U0", "meV", "U0", "Ha", HARTREE_TO_MEV, 0, "atomisation internal energy at 0 K"),
    QM9Target("U", "meV", "U", "Ha", HARTREE_TO_MEV, 1, "atomisation internal energy at 298.15 K"),
    QM9Target("H", "meV", "H", "Ha", HARTREE_TO_MEV, 2, "atomisation enthalpy at 298.15 K"),
    QM9Target("G", "meV", "G", "Ha", HARTREE_TO_MEV, 3, "atomisation free energy at 298.15 K"),
    QM9Target("Cv", "cal/(mol K)", "Cv", "cal/(mol K)", 1.0, None, "heat capacity at 298.15 K"),
    QM9Target("U0_total", "eV", "U0", "Ha", HARTREE_TO_EV, None, "total internal energy at 0 K"),
    QM9Target("U_total", "eV", "U", "Ha", HARTREE_TO_EV, None, "total internal energy at 298.15 K"),
    QM9Target("H_total", "eV", "H", "Ha", HARTREE_TO_EV, None, "total enthalpy at 298.15 K"),
    QM9Target("G_total", "eV", "G", "Ha", HARTREE_TO_EV, None, "total free energy at 298.15 K"),
)
TARGET_NAMES = tuple(t.name for t in TARGETS)

#: Named splits: ``(train, val, test)`` sizes on the full 130,831 molecules (``None``: the
#: rest), the default seed, and the reference. Molecules are in QM9 id order and the split
#: is ``numpy.random.RandomState(seed).permutation`` cut into train, val, test.
SPLITS = {
    # Cormorant / EGNN: test = int(0.1 * 130831), valid = the rest; np.random.seed(0).
    "egnn": {"sizes": (100_000, None, 13_083), "seed": 0, "ref": "Cormorant (Anderson et al. 2019), EGNN"},
    # DimeNet: 110k train, 10k validation, the rest test; DimeNet's data_seed is 42.
    "dimenet": {"sizes": (110_000, 10_000, None), "seed": 42, "ref": "DimeNet (Klicpera et al. 2020)"},
}
QM9_SIZE = 130_831


def default_root() -> str:
    """``$EQUIGRAPH_CACHE/qm9``, default ``~/.cache/equigraph/qm9``."""
    cache = os.environ.get("EQUIGRAPH_CACHE") or osp.join(osp.expanduser("~"), ".cache", "equigraph")
    return osp.join(cache, "qm9")


def target_index(target: str | Sequence[str]) -> list[int]:
    """Columns of ``y`` for target name(s) (case-insensitive), e.g. ``target_index("gap") == [4]``."""
    names = [target] if isinstance(target, str) else list(target)
    if not names:
        raise ValueError("target: empty list of targets")
    lower = {n.lower(): i for i, n in enumerate(TARGET_NAMES)}
    out = []
    for n in names:
        if not isinstance(n, str) or n.lower() not in lower:
            raise ValueError(f"target: unknown QM9 target {n!r}; known: {list(TARGET_NAMES)}")
        out.append(lower[n.lower()])
    return out


def split_indices(name: str, num: int, seed: int | None = None) -> dict[str, torch.Tensor]:
    """Indices ``{"train", "val", "test"}`` of the named split of ``num`` molecules.

    On the full dataset (``num == 130831``) the sizes are those of :data:`SPLITS`; on a
    smaller (subset or filtered) dataset they are scaled by ``num / 130831``. ``seed``
    defaults to the split's own (0 for ``"egnn"``, 42 for ``"dimenet"``).

    Example:
        >>> s = split_indices("egnn", 130831)
        >>> [len(s[k]) for k in ("train", "val", "test")]
        [100000, 17748, 13083]
    """
    if name not in SPLITS:
        raise ValueError(f"split: unknown split {name!r}; known: {sorted(SPLITS)}")
    if not isinstance(num, int) or num < 3:
        raise ValueError(f"num: need at least 3 molecules to split, got {num!r}")
    spec = SPLITS[name]
    sizes = list(spec["sizes"])
    if num != QM9_SIZE:
        scale = num / QM9_SIZE
        sizes = [None if s is None else max(1, int(round(s * scale))) for s in sizes]
    rest = num - sum(s for s in sizes if s is not None)
    if rest < 1:
        raise ValueError(f"split {name!r}: sizes {spec['sizes']} do not fit {num} molecules")
    sizes = [rest if s is None else s for s in sizes]
    perm = np.random.RandomState(spec["seed"] if seed is None else seed).permutation(num)
    cuts = np.cumsum(sizes)[:-1]
    parts = np.split(perm, cuts)
    return {k: torch.from_numpy(p.astype(np.int64)) for k, p in zip(("train", "val", "test"), parts)}


class QM9(InMemoryDataset):
    r"""The QM9 dataset, read offline from the ``qm9pack`` package or from raw files.

    Each molecule is a :class:`~torch_geometric.data.Data` with

    - ``z`` ``[N]`` atomic numbers; ``pos`` ``[N, 3]`` B3LYP geometry, **Å**;
    - ``charges`` ``[N]`` Mulliken partial charges, **e** (not for the SDF source);
    - ``y`` ``[1, T]`` targets (all 16 of :data:`TARGETS`, or those chosen by ``target``);
    - ``gdb_id`` ``[1]`` the molecule's number in QM9 (1..133,885).

    Targets and units (:data:`TARGETS`): ``mu`` D, ``alpha`` a0^3, ``homo`` / ``lumo`` /
    ``gap`` meV, ``r2`` a0^2, ``zpve`` meV, ``U0`` / ``U`` / ``H`` / ``G`` meV as
    atomisation energies (the total minus the per-element references of QM9's atomref
    table, :data:`ATOMREF_HARTREE`), ``Cv`` cal/(mol K), and the raw totals
    ``U0_total`` / ``U_total`` / ``H_total`` / ``G_total`` in eV (float32 keeps them to
    about 1 meV). Hartree -> eV uses CODATA 2018 (27.211386245988).

    Sources (``source="auto"`` picks the first present in ``root/raw``): ``"sdf"`` PyG's
    ``gdb9.sdf`` + ``gdb9.sdf.csv``; ``"xyz"`` the original ``dsgdb9nsd_*.xyz`` files or
    ``dsgdb9nsd.xyz.tar.bz2``; otherwise ``"qm9pack"``. For the raw sources the ids in
    ``raw/uncharacterized.txt``, when present, are left out as in PyG / Cormorant.
    Processing (all molecules, a few seconds with ``qm9pack``) happens once; the result is
    cached in ``root/processed``.

    Args:
        root (str, optional): dataset folder (default: ``$EQUIGRAPH_CACHE/qm9``, with
            ``EQUIGRAPH_CACHE`` defaulting to ``~/.cache/equigraph``).
        target (str or list of str, optional): keep only these columns of ``y``
            (default: :obj:`None`, all of :data:`TARGET_NAMES`).
        split (str, optional): named split of :data:`SPLITS`, ``"egnn"`` (100,000 / 17,748 /
            13,083) or ``"dimenet"`` (110,000 / 10,000 / rest) (default: :obj:`"egnn"`).
        subset (str, optional): ``"train"``, ``"val"`` or ``"test"`` to expose only that
            part of ``split`` (default: :obj:`None`, every molecule).
        seed (int, optional): split seed (default: :obj:`None`, the split's own).
        max_train (int, optional): keep the first ``max_train`` molecules of the (random)
            training part (``subset="train"`` and :meth:`get_split`), for CPU-budget runs
            (default: :obj:`None`).
        max_molecules (int, optional): process only the first molecules by id, e.g. for
            tests; the processed file is cached separately (default: :obj:`None`).
        source (str, optional): ``"auto"``, ``"qm9pack"``, ``"sdf"`` or ``"xyz"``
            (default: :obj:`"auto"`).
        transform, pre_transform, pre_filter (callable, optional): PyG's.
        force_reload (bool, optional): reprocess (default: :obj:`False`).
        log (bool, optional): print progress (default: :obj:`True`).

    Example:
        >>> import tempfile
        >>> ds = QM9(root=tempfile.mkdtemp(), max_molecules=10, target="gap", log=False)
        >>> ds.unit, ds[0].z.tolist(), ds[0].y.shape
        ('meV', [6, 1, 1, 1, 1], torch.Size([1, 1]))
    """

    def __init__(self, root: str | None = None, target: str | Sequence[str] | None = None,
                 split: str = "egnn", subset: str | None = None, seed: int | None = None,
                 max_train: int | None = None, max_molecules: int | None = None, source: str = "auto",
                 transform: Callable | None = None, pre_transform: Callable | None = None,
                 pre_filter: Callable | None = None, force_reload: bool = False, log: bool = True):
        root = root or default_root()
        if source not in ("auto", "qm9pack", "sdf", "xyz"):
            raise ValueError(f"source: expected 'auto', 'qm9pack', 'sdf' or 'xyz', got {source!r}")
        if max_molecules is not None and (not isinstance(max_molecules, int) or max_molecules < 1):
            raise ValueError(f"max_molecules: expected a positive int, got {max_molecules!r}")
        if max_train is not None and (not isinstance(max_train, int) or max_train < 1):
            raise ValueError(f"max_train: expected a positive int, got {max_train!r}")
        if subset not in (None, "train", "val", "test"):
            raise ValueError(f"subset: expected 'train', 'val', 'test' or None, got {subset!r}")
        if split not in SPLITS:
            raise ValueError(f"split: unknown split {split!r}; known: {sorted(SPLITS)}")
        self.columns = list(range(len(TARGETS))) if target is None else target_index(target)
        self.source = self._resolve_source(osp.join(root, "raw"), source)
        self.max_molecules = max_molecules
        self.split_name, self.seed, self.max_train, self.subset = split, seed, max_train, subset
        super().__init__(root, transform, pre_transform, pre_filter, log=log, force_reload=force_reload)
        self.load(self.processed_paths[0])
        if self.columns != list(range(len(TARGETS))):
            self._data.y = self._data.y[:, self.columns]
        if subset is not None:
            self._indices = self.get_split()[subset].tolist()

    @staticmethod
    def _resolve_source(raw_dir: str, source: str) -> str:
        has_sdf = all(osp.isfile(osp.join(raw_dir, f)) for f in ("gdb9.sdf", "gdb9.sdf.csv"))
        xyz = QM9._xyz_path(raw_dir)
        if source == "sdf" and not has_sdf:
            raise FileNotFoundError(f"source='sdf': {raw_dir} needs gdb9.sdf and gdb9.sdf.csv")
        if source == "xyz" and xyz is None:
            raise FileNotFoundError(f"source='xyz': {raw_dir} has no dsgdb9nsd_*.xyz files or dsgdb9nsd.xyz.tar.bz2")
        if source != "auto":
            return source
        return "sdf" if has_sdf else "xyz" if xyz is not None else "qm9pack"

    @staticmethod
    def _xyz_path(raw_dir: str) -> str | None:
        if not osp.isdir(raw_dir):
            return None
        tarball = osp.join(raw_dir, "dsgdb9nsd.xyz.tar.bz2")
        if osp.isfile(tarball):
            return tarball
        for sub in (raw_dir, osp.join(raw_dir, "dsgdb9nsd.xyz")):
            if osp.isdir(sub) and any(f.startswith("dsgdb9nsd_") and f.endswith(".xyz") for f in os.listdir(sub)):
                return sub
        return None

    @property
    def raw_file_names(self) -> list[str]:
        return []

    @property
    def processed_file_names(self) -> list[str]:
        n = "all" if self.max_molecules is None else str(self.max_molecules)
        return [f"qm9_{self.source}_{n}.pt"]

    def download(self) -> None:
        """Nothing to download: ``qm9pack`` ships the data; raw files are the user's."""

    # --- targets ---------------------------------------------------------------------

    @property
    def target_names(self) -> list[str]:
        """Names of the columns of ``y``."""
        return [TARGETS[i].name for i in self.columns]

    @property
    def units(self) -> list[str]:
        """Units of the columns of ``y``."""
        return [TARGETS[i].unit for i in self.columns]

    @property
    def unit(self) -> str:
        """Unit of ``y`` when it has one column (a ``ValueError`` otherwise)."""
        if len(self.columns) != 1:
            raise ValueError(f"unit: y has {len(self.columns)} columns; use .units")
        return self.units[0]

    @staticmethod
    def atomref(target: str) -> torch.Tensor | None:
        """``[10, 1]`` per-element reference (by atomic number) of a total-energy target in
        its unit (``U0_total`` ... ``G_total``), for models that add a per-atom reference
        (PyG SchNet's ``atomref``); ``None`` for every other target."""
        t = TARGETS[target_index(target)[0]]
        if not t.name.endswith("_total"):
            return None
        col = ("U0", "U", "H", "G").index(t.raw)
        out = torch.zeros(10, 1, dtype=torch.float64)
        for z, refs in ATOMREF_HARTREE.items():
            out[z, 0] = refs[col] * t.factor
        return out

    # --- splits ----------------------------------------------------------------------

    def get_split(self, name: str | None = None, seed: int | None = None) -> dict[str, torch.Tensor]:
        """``{"train", "val", "test"}`` indices into the full processed dataset (see
        :func:`split_indices`); ``max_train`` cuts the training part."""
        num = self._data.y.size(0)
        out = split_indices(name or self.split_name, num, self.seed if seed is None else seed)
        if self.max_train is not None:
            out["train"] = out["train"][: self.max_train]
        return out

    # --- processing ------------------------------------------------------------------

    def _read_raw(self) -> QM9Raw:
        exclude = set()
        uncharacterized = osp.join(self.raw_dir, "uncharacterized.txt")
        if self.source != "qm9pack" and osp.isfile(uncharacterized):
            exclude = qm9_raw.read_uncharacterized(uncharacterized)
        if self.source == "qm9pack":
            return qm9_raw.read_qm9pack(self.max_molecules, progress=self.log)
        if self.source == "sdf":
            return qm9_raw.read_sdf_csv(osp.join(self.raw_dir, "gdb9.sdf"), osp.join(self.raw_dir, "gdb9.sdf.csv"),
                                        exclude, self.max_molecules, progress=self.log)
        return qm9_raw.read_xyz_archive(self._xyz_path(self.raw_dir), exclude, self.max_molecules,
                                        progress=self.log)

    @staticmethod
    def targets_from_raw(raw: QM9Raw) -> np.ndarray:
        """``[M, 16]`` float64 targets of :data:`TARGETS` from raw properties."""
        counts = np.zeros((len(raw), 10), np.int64)
        mol = np.repeat(np.arange(len(raw)), raw.num_atoms)
        np.add.at(counts, (mol, raw.z), 1)
        refs = np.zeros((10, 4), np.float64)
        for z, r in ATOMREF_HARTREE.items():
            refs[z] = r
        ref_sums = counts @ refs  # [M, 4] Hartree
        y = np.empty((len(raw), len(TARGETS)), np.float64)
        for k, t in enumerate(TARGETS):
            value = raw.props[:, RAW_COLUMNS.index(t.raw)]
            if t.atomref is not None:
                value = value - ref_sums[:, t.atomref]
            y[:, k] = value * t.factor
        return y

    def process(self) -> None:
        raw = self._read_raw()
        if self.max_molecules is not None:
            raw = qm9_raw.take(raw, np.arange(len(raw)) < self.max_molecules)
        y = torch.from_numpy(self.targets_from_raw(raw)).float()
        z = torch.from_numpy(np.array(raw.z, dtype=np.int64))
        pos = torch.from_numpy(raw.pos).float()
        charges = None if raw.charges is None else torch.from_numpy(raw.charges).float()
        gdb_id = torch.from_numpy(np.array(raw.gdb_id, dtype=np.int64))
        ptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.from_numpy(np.cumsum(raw.num_atoms))])
        if self.pre_transform is None and self.pre_filter is None:
            # Build the collated storage directly: 130k Data objects would be slow to collate.
            data = Data(z=z, pos=pos, y=y, gdb_id=gdb_id)
            graph = torch.arange(len(raw) + 1)
            slices = {keys.Z: ptr, keys.POS: ptr, keys.Y: graph, "gdb_id": graph}
            if charges is not None:
                data[keys.CHARGES] = charges
                slices[keys.CHARGES] = ptr
            torch.save((data.to_dict(), slices, Data), self.processed_paths[0])
            return
        data_list = []
        for i in range(len(raw)):
            a, b = int(ptr[i]), int(ptr[i + 1])
            d = Data(z=z[a:b], pos=pos[a:b], y=y[i:i + 1], gdb_id=gdb_id[i:i + 1])
            if charges is not None:
                d[keys.CHARGES] = charges[a:b]
            if self.pre_filter is not None and not self.pre_filter(d):
                continue
            data_list.append(self.pre_transform(d) if self.pre_transform is not None else d)
        if not data_list:
            raise ValueError("pre_filter: removed every molecule")
        self.save(data_list, self.processed_paths[0])

    def __repr__(self) -> str:
        part = f", subset={self.subset!r}" if self.subset else ""
        return f"QM9({len(self)}, source={self.source!r}, split={self.split_name!r}{part})"
