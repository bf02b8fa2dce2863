"""Readers of the raw QM9 sources, each returning the same :class:`QM9Raw` arrays.

- the PyPI package ``qm9pack`` (CSV files, located without importing the package; the
  130,831 characterised molecules);
- PyG's raw folder: ``gdb9.sdf`` + ``gdb9.sdf.csv`` (+ ``uncharacterized.txt``);
- the original per-molecule XYZ archive ``dsgdb9nsd_*.xyz`` (a folder or the
  ``dsgdb9nsd.xyz.tar.bz2`` tarball; + ``uncharacterized.txt``), whose numbers may use
  Mathematica's ``*^`` exponent notation.

Raw properties are kept in the units of the sources (see :data:`RAW_UNITS`); conversion to
the dataset's targets happens only in :mod:`equigraph.datasets.qm9`.
"""
from __future__ import annotations

import glob
import importlib.util
import io
import os
import re
import tarfile
from dataclasses import dataclass

import numpy as np

__all__ = [
    "RAW_COLUMNS", "RAW_UNITS", "QM9Raw", "qm9pack_dir", "read_qm9pack", "parse_qm9_xyz",
    "read_xyz_archive", "read_sdf_csv", "read_uncharacterized", "take",
]

#: Raw property columns of :attr:`QM9Raw.props`, in order.
RAW_COLUMNS = ("mu", "alpha", "homo", "lumo", "gap", "r2", "zpve", "U0", "U", "H", "G", "Cv")
#: Units of the raw columns, as published (Ramakrishnan et al. 2014).
RAW_UNITS = ("D", "a0^3", "Ha", "Ha", "Ha", "a0^2", "Ha", "Ha", "Ha", "Ha", "Ha", "cal/(mol K)")

_SYMBOL_TO_Z = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
_QM9PACK_COLUMNS = ("Dipole_debye", "Polarizability_bohr3", "HOMO_au", "LUMO_au", "HOMO_LUMO_gap_au",
                    "R2_bohr2", "ZPVE_au", "InternalEnergy_0K_au", "InternalEnergy_298K_au",
                    "Enthalphy_298K_au", "GibbsFreeEnergy_298K_au", "Heatcapacity_Cv_cal_mol_K")
_SDF_CSV_COLUMNS = ("mu", "alpha", "homo", "lumo", "gap", "r2", "zpve", "u0", "u298", "h298", "g298", "cv")


@dataclass
class QM9Raw:
    """Molecules of one raw source, concatenated.

    Attributes:
        gdb_id: ``[M]`` int64, the molecule's number in QM9 (1..133885).
        num_atoms: ``[M]`` int64.
        z: ``[sum N]`` int64 atomic numbers.
        pos: ``[sum N, 3]`` float64, Å.
        charges: ``[sum N]`` float64 Mulliken charges (e), or ``None`` (SDF source).
        props: ``[M, 12]`` float64, columns :data:`RAW_COLUMNS` in :data:`RAW_UNITS`.
    """

    gdb_id: np.ndarray
    num_atoms: np.ndarray
    z: np.ndarray
    pos: np.ndarray
    charges: np.ndarray | None
    props: np.ndarray

    def __len__(self) -> int:
        return len(self.gdb_id)

    def validate(self, source: str) -> None:
        """Raise a :class:`ValueError` naming the first bad molecule (by ``gdb_id``)."""
        def first(bad: np.ndarray, what: str) -> None:
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(f"{source}: molecule gdb_{self.gdb_id[i]} (record {i}) {what}")

        first(self.num_atoms < 1, "has no atoms")
        first(~np.isfinite(self.props).all(axis=1), "has a non-finite property")
        atom_bad = ~np.isfinite(self.pos).all(axis=1)
        first(np.add.reduceat(atom_bad, np.cumsum(self.num_atoms) - self.num_atoms) > 0,
              "has non-finite coordinates")


def take(raw: QM9Raw, keep: np.ndarray) -> QM9Raw:
    """The molecules of ``raw`` where the boolean mask ``keep`` is true."""
    keep = np.asarray(keep, bool)
    atom_mask = np.repeat(keep, raw.num_atoms)
    return QM9Raw(raw.gdb_id[keep], raw.num_atoms[keep], raw.z[atom_mask], raw.pos[atom_mask],
                  None if raw.charges is None else raw.charges[atom_mask], raw.props[keep])


def qm9pack_dir() -> str:
    """Folder of the ``qm9pack`` CSV files, found without importing ``qm9pack`` (its
    ``__init__`` imports pandas and ``pkg_resources``)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("qm9pack is not installed (pip install qm9pack), and no raw QM9 files were given")
    folder = os.path.join(list(spec.submodule_search_locations)[0], "data")
    if not os.path.isfile(os.path.join(folder, "qm9_part1.csv")):
        raise FileNotFoundError(f"qm9pack's data files are missing from {folder}")
    return folder


def _floats(text: str, what: str, rows, ids) -> np.ndarray:
    try:
        return np.array(text.split(","), dtype=np.float64)
    except ValueError:
        for row, gid in zip(rows, ids):
            try:
                np.array(row.split(","), dtype=np.float64)
            except ValueError as err:
                raise ValueError(f"qm9pack: molecule gdb_{gid}: unparsable {what}: {err}") from None
        raise


def read_qm9pack(max_molecules: int | None = None, folder: str | None = None, progress: bool = False) -> QM9Raw:
    """Read the ``qm9pack`` CSV files (``qm9_part1..3.csv``). Geometries are stored as
    strings ``"[[x,y,z],...]"`` in Å, elements as ``"['C','H',...]"``; properties in the
    units of :data:`RAW_UNITS`. Reads only the first ``max_molecules`` rows when given."""
    import pandas as pd

    folder = folder or qm9pack_dir()
    files = sorted(glob.glob(os.path.join(folder, "qm9_part*.csv")))
    if not files:
        raise FileNotFoundError(f"no qm9_part*.csv in {folder}")
    cols = ["Index", "N_atoms", "Elements", "XYZ_Ang", "Mulliken_pop", *_QM9PACK_COLUMNS]
    frames = []
    remaining = max_molecules
    for path in _progress(files, progress, "qm9pack csv"):
        if remaining is not None and remaining <= 0:
            break
        frame = pd.read_csv(path, usecols=cols, nrows=remaining)
        frames.append(frame)
        if remaining is not None:
            remaining -= len(frame)
    df = pd.concat(frames, ignore_index=True)
    ids = df["Index"].to_numpy(np.int64)
    num_atoms = df["N_atoms"].to_numpy(np.int64)

    def stripped(col: str):
        return df[col].str.replace("[", "", regex=False).str.replace("]", "", regex=False)

    xyz_rows = stripped("XYZ_Ang")
    q_rows = stripped("Mulliken_pop")
    el_rows = stripped("Elements").str.replace("'", "", regex=False)
    for rows, per_atom, what in ((xyz_rows, 3, "coordinates"), (q_rows, 1, "Mulliken charges"),
                                 (el_rows, 1, "elements")):
        counts = rows.str.count(",").to_numpy() + 1
        bad = np.flatnonzero(counts != per_atom * num_atoms)
        if bad.size:
            i = bad[0]
            raise ValueError(f"qm9pack: molecule gdb_{ids[i]} (row {i}) has {counts[i]} {what} values "
                             f"for N_atoms={num_atoms[i]}")
    pos = _floats(",".join(xyz_rows.tolist()), "coordinates", xyz_rows, ids).reshape(-1, 3)
    charges = _floats(",".join(q_rows.tolist()), "Mulliken charges", q_rows, ids)
    symbols = ",".join(el_rows.tolist()).split(",")
    try:
        z = np.fromiter((_SYMBOL_TO_Z[s] for s in symbols), dtype=np.int64, count=len(symbols))
    except KeyError as err:
        atom = symbols.index(err.args[0])
        mol = int(np.searchsorted(np.cumsum(num_atoms), atom, side="right"))
        raise ValueError(f"qm9pack: molecule gdb_{ids[mol]} has element {err.args[0]!r}, not one of "
                         f"{tuple(_SYMBOL_TO_Z)}") from None
    props = df[list(_QM9PACK_COLUMNS)].to_numpy(np.float64)
    raw = QM9Raw(ids, num_atoms, z, pos, charges, props)
    raw.validate("qm9pack")
    return raw


def _number(token: str) -> float:
    # The original archive writes some numbers in Mathematica's notation: 1.2*^-6.
    return float(token.replace("*^", "e"))


def parse_qm9_xyz(text: str, source: str = "<string>") -> dict:
    """Parse one molecule of the original QM9 archive (``dsgdb9nsd_NNNNNN.xyz``)::

        N
        gdb ID  A B C mu alpha homo lumo gap r2 zpve U0 U H G Cv
        El x y z q            (N lines: element, Å, Mulliken charge in e)
        frequencies (cm^-1)
        SMILES(GDB)  SMILES(relaxed)
        InChI(GDB)   InChI(relaxed)

    Returns a dict with ``gdb_id``, ``z`` ``[N]``, ``pos`` ``[N, 3]``, ``charges`` ``[N]``,
    ``props`` ``[12]`` (:data:`RAW_COLUMNS`) and ``smiles``. A malformed line raises a
    :class:`ValueError` naming ``source`` and the 1-based line number.
    """
    lines = text.splitlines()

    def fail(lineno: int, why: str):
        raise ValueError(f"{source}: line {lineno}: {why}")

    if not lines:
        raise ValueError(f"{source}: empty file")
    try:
        n = int(lines[0].strip())
    except ValueError:
        fail(1, f"expected the atom count, got {lines[0]!r}")
    if n < 1:
        fail(1, f"atom count must be positive, got {n}")
    if len(lines) < n + 3:
        fail(len(lines), f"file ends early: {n} atoms declared, {len(lines)} lines")
    head = lines[1].split()
    if len(head) != 17 or head[0] != "gdb":
        fail(2, f"expected 'gdb ID' and 15 properties, got {len(head)} fields: {lines[1]!r}")
    try:
        gdb_id = int(head[1])
        props15 = [_number(t) for t in head[2:]]
    except ValueError as err:
        fail(2, f"unparsable property ({err})")
    z = np.empty(n, np.int64)
    pos = np.empty((n, 3), np.float64)
    charges = np.empty(n, np.float64)
    for k in range(n):
        tokens = lines[2 + k].split()
        if len(tokens) != 5:
            fail(3 + k, f"expected 'element x y z charge', got {lines[2 + k]!r}")
        if tokens[0] not in _SYMBOL_TO_Z:
            fail(3 + k, f"element {tokens[0]!r} is not one of {tuple(_SYMBOL_TO_Z)}")
        z[k] = _SYMBOL_TO_Z[tokens[0]]
        try:
            pos[k] = [_number(t) for t in tokens[1:4]]
            charges[k] = _number(tokens[4])
        except ValueError as err:
            fail(3 + k, f"unparsable number ({err})")
    if not np.isfinite(pos).all():
        fail(3, "non-finite coordinates")
    smiles_fields = lines[n + 3].split() if len(lines) > n + 3 else []
    # props15 = A, B, C (GHz) then the 12 RAW_COLUMNS.
    return {"gdb_id": gdb_id, "z": z, "pos": pos, "charges": charges,
            "props": np.array(props15[3:], dtype=np.float64),
            "smiles": smiles_fields[-1] if smiles_fields else ""}


def read_uncharacterized(path: str) -> set[int]:
    """QM9 ids listed in ``uncharacterized.txt`` (the 3,054 molecules whose geometry
    check failed); lines whose first field is not an integer are the header/footer."""
    ids = set()
    with open(path) as f:
        for line in f:
            fields = line.split()
            if fields and fields[0].isdigit():
                ids.add(int(fields[0]))
    return ids


def _progress(iterable, enabled: bool, desc: str, total: int | None = None):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total)


def _stack(mols: list[dict], source: str) -> QM9Raw:
    if not mols:
        raise ValueError(f"{source}: no molecules found")
    mols.sort(key=lambda m: m["gdb_id"])
    raw = QM9Raw(
        gdb_id=np.array([m["gdb_id"] for m in mols], np.int64),
        num_atoms=np.array([len(m["z"]) for m in mols], np.int64),
        z=np.concatenate([m["z"] for m in mols]),
        pos=np.concatenate([m["pos"] for m in mols]),
        charges=None if mols[0]["charges"] is None else np.concatenate([m["charges"] for m in mols]),
        props=np.stack([m["props"] for m in mols]),
    )
    raw.validate(source)
    return raw


_XYZ_NAME = re.compile(r"dsgdb9nsd_(\d+)\.xyz$")


def read_xyz_archive(path: str, exclude: set[int] = frozenset(), max_molecules: int | None = None,
                     progress: bool = False) -> QM9Raw:
    """Read the original archive: a folder of ``dsgdb9nsd_*.xyz`` files or the
    ``.tar.bz2`` tarball; molecules whose id is in ``exclude`` are skipped; the first
    ``max_molecules`` (by id) are kept when given."""
    mols = []
    if os.path.isdir(path):
        files = sorted(f for f in os.listdir(path) if _XYZ_NAME.search(f))
        files = [f for f in files if int(_XYZ_NAME.search(f).group(1)) not in exclude]
        if max_molecules is not None:
            files = files[:max_molecules]
        for name in _progress(files, progress, "QM9 xyz"):
            full = os.path.join(path, name)
            with open(full) as f:
                mols.append(parse_qm9_xyz(f.read(), full))
    else:
        with tarfile.open(path) as tar:
            for member in _progress(tar, progress, "QM9 xyz"):
                match = _XYZ_NAME.search(member.name)
                if not match or int(match.group(1)) in exclude:
                    continue
                text = io.TextIOWrapper(tar.extractfile(member)).read()
                mols.append(parse_qm9_xyz(text, f"{path}:{member.name}"))
                if max_molecules is not None and len(mols) >= max_molecules:
                    break
    return _stack(mols, path)


def read_sdf_csv(sdf_path: str, csv_path: str, exclude: set[int] = frozenset(),
                 max_molecules: int | None = None, progress: bool = False) -> QM9Raw:
    """Read PyG's raw ``gdb9.sdf`` (V2000 records, coordinates in Å) with the properties of
    ``gdb9.sdf.csv`` (``mol_id`` = ``gdb_ID``; columns ``mu, alpha, homo, ..., cv`` in
    :data:`RAW_UNITS`). The n-th record must be molecule ``gdb_n``. No Mulliken charges."""
    import pandas as pd

    table = pd.read_csv(csv_path)
    missing = [c for c in ("mol_id", *_SDF_CSV_COLUMNS) if c not in table.columns]
    if missing:
        raise ValueError(f"{csv_path}: missing columns {missing}")
    csv_ids = table["mol_id"].astype(str).str.replace("gdb_", "", regex=False).astype(np.int64).to_numpy()
    csv_props = table[list(_SDF_CSV_COLUMNS)].to_numpy(np.float64)
    with open(sdf_path) as f:
        records = f.read().split("$$$$\n")
    if records and not records[-1].strip():
        records.pop()
    if len(records) != len(csv_ids):
        raise ValueError(f"{sdf_path}: {len(records)} records but {csv_path} has {len(csv_ids)} rows")
    mols = []
    for i in _progress(range(len(records)), progress, "QM9 sdf"):
        gdb_id = int(csv_ids[i])
        if gdb_id in exclude:
            continue
        lines = records[i].splitlines()
        try:
            n = int(lines[3][:3])
            atoms = [lines[4 + k].split() for k in range(n)]
            pos = np.array([[float(t) for t in a[:3]] for a in atoms], np.float64)
            z = np.array([_SYMBOL_TO_Z[a[3]] for a in atoms], np.int64)
        except (IndexError, ValueError, KeyError) as err:
            raise ValueError(f"{sdf_path}: record {i} (molecule gdb_{gdb_id}) is malformed: "
                             f"{type(err).__name__}: {err}") from None
        mols.append({"gdb_id": gdb_id, "z": z, "pos": pos, "charges": None, "props": csv_props[i]})
        if max_molecules is not None and len(mols) >= max_molecules:
            break
    return _stack(mols, sdf_path)

