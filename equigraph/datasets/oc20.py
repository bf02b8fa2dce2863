r"""Open Catalyst 2020 (OC20) data: lazy readers for the files fairchem distributes and
writes, converted to equigraph graphs, for the S2EF and IS2RE tasks (Chanussot et al.,
`"Open Catalyst 2020 (OC20) Dataset and Community Challenges"
<https://arxiv.org/abs/2010.09990>`_).

Three storage formats, each read record by record (random access, nothing loaded whole):

- ``"lmdb"``: fairchem's LMDB of pickled PyG ``Data`` objects (one ``.lmdb`` file, a folder
  of ``*.lmdb`` shards read in name order, or an LMDB folder holding ``data.mdb``). Keys are
  the record indices as ASCII (``b"0"``, ``b"1"``, ...) plus an optional pickled
  ``b"length"``. Objects pickled by PyG 1.x (attributes directly in ``__dict__``, no
  ``_store``) load as well as current ones, and plain dicts are accepted.
- ``"ase"``: an ASE database (``.db``, ``.json``; ``.aselmdb`` when the optional
  ``ase-db-backends`` package that ASE delegates it to is installed): energy and forces
  from each row's calculator, tags, ``FixAtoms`` as ``fixed``, and the row keys ``sid``,
  ``fid``, ``y_init``, ``y_relaxed``, ``pos_relaxed`` when present; a row key
  ``ref_energy`` is subtracted from the energy with ``subtract_reference``.
- ``"extxyz"``: the S2EF download layout, a folder of ``K.extxyz`` trajectories each with a
  ``K.txt`` of one line per frame, ``random<system id>,frame<frame id>,<reference energy>``.
  The frames hold total energies; with ``subtract_reference`` (default) the reference is
  subtracted, as fairchem's ``preprocess_ef.py --ref-energy`` does for the LMDBs, so both
  formats give the same adsorption energies.

Fields of an OC20 record and the graph keys they become:

=========================================  ==============  ==================================
OC20 record                                graph key       shape, unit
=========================================  ==============  ==================================
``atomic_numbers`` (or ``z``, ``numbers``)  ``z``           ``[N]`` long, checked in 1..118
``pos``                                    ``pos``         ``[N, 3]`` Å (initial for IS2RE)
``cell``                                   ``cell``        ``[1, 3, 3]`` Å, rows; volume > 0
``pbc`` (absent in OC20: all periodic)     ``pbc``         ``[1, 3]`` bool
``tags``                                   ``tags``        ``[N]`` long: 0 subsurface, 1
                                                           surface, 2 adsorbate
``fixed`` (absent: ``tags == 0``)          ``fixed``       ``[N]`` bool, fixed in the DFT
``y`` or ``energy``            (S2EF)      ``energy``      ``[1]`` eV (adsorption energy)
``force`` or ``forces``        (S2EF)      ``forces``      ``[N, 3]`` eV/Å
``y_relaxed``                  (IS2RE)     ``energy_relaxed``  ``[1]`` eV, the IS2RE target
``y_init``                     (IS2RE)     ``energy_init``     ``[1]`` eV
``pos_relaxed``                (IS2RE)     ``pos_relaxed``     ``[N, 3]`` Å
``sid``, ``fid``                           ``sid``, ``fid``    ``[1]`` long (or str)
``natoms``                                 (checked = N)
=========================================  ==============  ==================================

Precomputed graphs in old LMDBs (``edge_index``, ``cell_offsets``, ``distances``) are
dropped: every equigraph model builds its own graph (with its own cutoff and the edge
convention of ``docs/conventions.md``).

LMDB environments and file handles are opened lazily, once per process (and re-opened after
a ``fork``), so a dataset is safe in ``DataLoader`` workers and under Lightning's
distributed sampler. Unpickling runs code named by the file: read only LMDBs you trust, as
with fairchem.

Bad input raises one-line :class:`ValueError` naming the file and the record: a missing
path, a file that is not an LMDB (or holds no pickled ``Data``), a record without a required
key, a cell of zero volume, an atomic number outside the periodic table, a structure of
more than ``max_atoms`` atoms (the memory budget per structure). With
``skip_invalid=True`` such records are skipped instead, and counted
(:attr:`OC20.num_skipped`, :attr:`OC20.skipped`): every record is then checked once when the
dataset is built.
"""
from __future__ import annotations

import bisect
import io
import math
import os
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data, Dataset

from equigraph.data import keys as K
from equigraph.datasets.registry import DataSplits, TargetInfo

__all__ = ["OC20", "record_to_data", "oc20_splits", "TASKS", "FORMATS", "UNITS", "DEFAULT_MAX_ATOMS",
           "TAGS", "FIXED", "SID", "FID", "ENERGY_INIT", "ENERGY_RELAXED", "POS_RELAXED", "MAX_ATOMIC_NUMBER"]

#: The OC20 tasks: structure to energy and forces, initial structure to relaxed energy.
TASKS = ("s2ef", "is2re")
#: Storage formats (see the module docstring).
FORMATS = ("lmdb", "ase", "extxyz")
#: ``[N]`` long: 0 subsurface (fixed) slab atom, 1 surface slab atom, 2 adsorbate atom.
TAGS = "tags"
#: ``[N]`` bool: atom held fixed in the DFT relaxation.
FIXED = "fixed"
#: ``[1]`` long (or str): system id.
SID = "sid"
#: ``[1]`` long (or str): frame id within the system's relaxation (S2EF).
FID = "fid"
#: ``[1]`` float: energy of the initial structure, eV (IS2RE records).
ENERGY_INIT = "energy_init"
#: ``[1]`` float: energy of the relaxed structure, eV (the IS2RE target).
ENERGY_RELAXED = "energy_relaxed"
#: ``[N, 3]`` float: relaxed positions, Å (IS2RE records).
POS_RELAXED = "pos_relaxed"
#: Units of the labels.
UNITS = {K.ENERGY: "eV", K.FORCES: "eV/Å", ENERGY_INIT: "eV", ENERGY_RELAXED: "eV", POS_RELAXED: "Å"}
#: Default memory budget per structure, in atoms (OC20's largest systems have ~250).
DEFAULT_MAX_ATOMS = 10_000
#: Largest atomic number of the periodic table (oganesson).
MAX_ATOMIC_NUMBER = 118
# Smallest |det(cell)| (Å^3) taken as a real cell.
_MIN_VOLUME = 1e-6
_ASE_SUFFIXES = (".db", ".json", ".aselmdb")
# Key of an ASE database row's reference energy (subtracted like the extxyz log's).
_REF_ENERGY = "ref_energy"


# --------------------------------------------------------------------------- records
def _record_fields(obj: Any, where: str) -> Dict[str, Any]:
    """The attributes of a pickled record as a dict: a current PyG ``Data`` (``_store``), a
    PyG 1.x one (attributes directly in ``__dict__``), or a mapping."""
    from torch_geometric.data.data import BaseData

    if isinstance(obj, BaseData):
        state = obj.__dict__
        store = state.get("_store")
        if store is not None:
            items = dict(store.items()) if hasattr(store, "items") else dict(vars(store))
        else:
            items = dict(state)
        # PyG 1.x pickles carry bookkeeping entries such as ``__num_nodes__`` and unset
        # attributes (``x``, ``edge_attr``, ...) as None.
        return {k: v for k, v in items.items() if v is not None and not k.startswith("_")}
    if isinstance(obj, Mapping):
        return {k: v for k, v in obj.items() if v is not None}
    raise ValueError(f"{where}: holds a {type(obj).__module__}.{type(obj).__name__}, not a PyG Data or a dict")


def _first_key(fields: Mapping[str, Any], names: Sequence[str]) -> Optional[str]:
    return next((n for n in names if n in fields), None)


def _array(value: Any, where: str, name: str) -> np.ndarray:
    if isinstance(value, Tensor):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value)
    except Exception as err:  # ragged lists, objects without an array form
        raise ValueError(f"{where}: {name!r} is not numeric ({type(err).__name__})") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{where}: {name!r} is not numeric (dtype {arr.dtype})")
    return arr


def _floats(value: Any, where: str, name: str, shape: Tuple[int, ...], dtype: torch.dtype) -> Tensor:
    arr = _array(value, where, name).astype(np.float64)
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"{where}: {name!r} has shape {list(arr.shape)}, expected {list(shape)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{where}: {name!r} contains NaN or inf")
    return torch.from_numpy(arr.reshape(shape)).to(dtype)


def _scalar(value: Any, where: str, name: str, dtype: torch.dtype) -> Tensor:
    return _floats(value, where, name, (1,), dtype)


def _identifier(value: Any, where: str, name: str) -> Union[Tensor, str]:
    if isinstance(value, str):
        return value
    arr = _array(value, where, name).reshape(-1)
    if arr.size != 1 or not np.isfinite(arr).all() or arr[0] != np.round(arr[0]):
        raise ValueError(f"{where}: {name!r} must be one integer or a string, got {value!r}")
    return torch.tensor([int(arr[0])], dtype=torch.long)


def record_to_data(record: Any, *, task: str = "s2ef", where: str = "record", labels: bool = True,
                   max_atoms: Optional[int] = DEFAULT_MAX_ATOMS, dtype: torch.dtype = torch.float32) -> Data:
    r"""Convert one OC20 record (a PyG ``Data`` of any PyG version, or a dict with the keys of
    the module docstring's table) to an equigraph graph.

    Args:
        record: the unpickled record.
        task (str, optional): ``"s2ef"`` (needs energy and forces) or ``"is2re"`` (needs
            ``y_relaxed``). (default: :obj:`"s2ef"`)
        where (str, optional): names the record in error messages. (default: :obj:`"record"`)
        labels (bool, optional): require the task's labels (test sets have none).
            (default: :obj:`True`)
        max_atoms (int, optional): memory budget per structure; :obj:`None` for none.
            (default: :data:`DEFAULT_MAX_ATOMS`)
        dtype (torch.dtype, optional): floating dtype. (default: :obj:`torch.float32`)

    Raises:
        ValueError: naming ``where`` and the problem (missing key, bad shape, NaN, zero-volume
            cell, unknown element, too many atoms, ...).

    Example:
        >>> import torch
        >>> rec = {"atomic_numbers": torch.tensor([29.0, 8.0]), "pos": torch.tensor([[0.0, 0, 0], [0, 0, 1.8]]),
        ...        "cell": torch.eye(3)[None] * 10, "tags": torch.tensor([1, 2]), "y": -0.5,
        ...        "force": torch.zeros(2, 3), "sid": 7, "fid": 0, "natoms": 2}
        >>> d = record_to_data(rec)
        >>> d.z.tolist(), d.energy.tolist(), d.fixed.tolist(), d.pbc.tolist()
        ([29, 8], [-0.5], [False, False], [[True, True, True]])
        >>> record_to_data({**rec, "cell": torch.zeros(1, 3, 3)}, where="train.lmdb: record 3")
        Traceback (most recent call last):
        ...
        ValueError: train.lmdb: record 3: 'cell' has zero volume (det = 0); an OC20 structure needs a periodic cell
    """
    if task not in TASKS:
        raise ValueError(f"task: expected one of {TASKS}, got {task!r}")
    fields = _record_fields(record, where)

    def need(names: Sequence[str], what: str) -> str:
        key = _first_key(fields, names)
        if key is None:
            hint = ""
            if task == "s2ef" and "y_relaxed" in fields:
                hint = "; it looks like an IS2RE record (y_relaxed): pass task='is2re'"
            elif task == "is2re" and _first_key(fields, ("y", "energy")) is not None:
                hint = "; it looks like an S2EF record (y / energy): pass task='s2ef'"
            raise ValueError(f"{where}: no {' or '.join(repr(n) for n in names)} ({what}); it has keys "
                             f"{sorted(fields)}{hint}")
        return key

    zkey = need(("atomic_numbers", "z", "numbers"), "atomic numbers")
    z = _array(fields[zkey], where, zkey).reshape(-1)
    n = int(z.size)
    if n == 0:
        raise ValueError(f"{where}: the structure has no atoms")
    if max_atoms is not None and n > max_atoms:
        raise ValueError(f"{where}: {n} atoms exceed max_atoms={max_atoms}, the memory budget per structure "
                         "(raise max_atoms to read it)")
    if not np.isfinite(z).all() or not (z == np.round(z)).all():
        raise ValueError(f"{where}: {zkey!r} holds non-integer atomic numbers")
    bad = (z < 1) | (z > MAX_ATOMIC_NUMBER)
    if bad.any():
        raise ValueError(f"{where}: atomic number {int(z[bad][0])} (atom {int(np.flatnonzero(bad)[0])}) is outside "
                         f"the periodic table (1..{MAX_ATOMIC_NUMBER})")
    if "natoms" in fields:
        natoms = _array(fields["natoms"], where, "natoms").reshape(-1)
        if natoms.size != 1 or int(natoms[0]) != n:
            raise ValueError(f"{where}: 'natoms' is {natoms.tolist()} but {zkey!r} has {n} entries")
    data = Data(z=torch.from_numpy(z.astype(np.int64)))
    data[K.POS] = _floats(fields[need((K.POS,), "positions")], where, K.POS, (n, 3), dtype)

    cell = _floats(fields[need((K.CELL,), "lattice vectors")], where, K.CELL, (1, 3, 3), torch.float64)
    if K.PBC in fields:
        pbc = torch.from_numpy(_array(fields[K.PBC], where, K.PBC).astype(bool).reshape(-1))
        if pbc.numel() != 3:
            raise ValueError(f"{where}: 'pbc' has {pbc.numel()} entries, expected 3")
    else:
        pbc = torch.ones(3, dtype=torch.bool)  # OC20's convention: every direction periodic
    volume = float(torch.linalg.det(cell[0]).abs())
    if bool(pbc.any()) and not volume > _MIN_VOLUME:
        raise ValueError(f"{where}: 'cell' has zero volume (det = {volume:.3g}); an OC20 structure needs a "
                         "periodic cell")
    data[K.CELL] = cell.to(dtype)
    data[K.PBC] = pbc.view(1, 3)

    tags = _array(fields[need((TAGS,), "0 subsurface, 1 surface, 2 adsorbate")], where, TAGS).reshape(-1)
    if tags.size != n or not (tags == np.round(tags)).all():
        raise ValueError(f"{where}: 'tags' must hold {n} integers, got shape {list(tags.shape)}")
    data[TAGS] = torch.from_numpy(tags.astype(np.int64))
    if FIXED in fields:
        fixed = _array(fields[FIXED], where, FIXED).reshape(-1)
        if fixed.size != n:
            raise ValueError(f"{where}: 'fixed' has {fixed.size} entries for {n} atoms")
        data[FIXED] = torch.from_numpy(fixed.astype(bool))
    else:
        data[FIXED] = data[TAGS] == 0

    if task == "s2ef":
        ekey = _first_key(fields, ("energy", "y")) if not labels else need(("energy", "y"), "S2EF energy")
        fkey = _first_key(fields, ("forces", "force")) if not labels else need(("forces", "force"), "S2EF forces")
        if ekey is not None:
            data[K.ENERGY] = _scalar(fields[ekey], where, ekey, dtype)
        if fkey is not None:
            data[K.FORCES] = _floats(fields[fkey], where, fkey, (n, 3), dtype)
    else:
        rkey = need(("y_relaxed",), "IS2RE relaxed energy") if labels else _first_key(fields, ("y_relaxed",))
        if rkey is not None:
            data[ENERGY_RELAXED] = _scalar(fields[rkey], where, rkey, dtype)
        if "y_init" in fields:
            data[ENERGY_INIT] = _scalar(fields["y_init"], where, "y_init", dtype)
        if POS_RELAXED in fields:
            data[POS_RELAXED] = _floats(fields[POS_RELAXED], where, POS_RELAXED, (n, 3), dtype)
    for key in (SID, FID):
        if key in fields:
            data[key] = _identifier(fields[key], where, key)
    return data


# --------------------------------------------------------------------------- readers
# Open LMDB environments of this process, by the identity of their data file. py-lmdb
# refuses to open one environment twice in a process, and its guard is inherited by a
# fork: a child must close the handles it inherited before opening its own (closing only
# unmaps the child's copy; the parent keeps reading).
_ENVS: Dict[Tuple[int, int], Any] = {}
_ENVS_PID: List[Optional[int]] = [None]


def _lmdb_env(path: Path, subdir: bool):
    import lmdb

    pid = os.getpid()
    if _ENVS_PID[0] != pid:
        if _ENVS_PID[0] is not None:
            for env in _ENVS.values():
                try:
                    env.close()
                except Exception:  # a handle the child cannot close is still not used again
                    pass
        _ENVS.clear()
        _ENVS_PID[0] = pid
    try:
        st = os.stat(path / "data.mdb" if subdir else path)
    except OSError as err:
        raise ValueError(f"{path}: cannot open it ({err.strerror})") from None
    key = (st.st_dev, st.st_ino)
    env = _ENVS.get(key)
    if env is None:
        try:
            env = lmdb.open(str(path), subdir=subdir, readonly=True, lock=False, readahead=False, meminit=False,
                            max_readers=256)
        except lmdb.Error as err:
            raise ValueError(f"{path}: not a readable LMDB file ({type(err).__name__}: {err})") from None
        _ENVS[key] = env
    return env


class _LmdbReader:
    """fairchem LMDB files, each opened once per process (see :func:`_lmdb_env`)."""

    format = "lmdb"

    def __init__(self, path: Path):
        import lmdb  # noqa: F401  (a missing install is reported here, once)

        if path.is_dir():
            if (path / "data.mdb").is_file():
                self.files, self.subdir = [path], True
            else:
                self.files, self.subdir = sorted(path.glob("*.lmdb")), False
                if not self.files:
                    raise ValueError(f"{path}: the folder holds no *.lmdb file (nor an LMDB data.mdb)")
        else:
            self.files, self.subdir = [path], False
        lengths = []
        for f in self.files:
            env = _lmdb_env(f, self.subdir)
            lengths.append(self._length(env, f))
            if lengths[-1]:
                self._sniff(env, f)
        self.lengths = lengths
        self.ends = np.cumsum(lengths).tolist()

    @staticmethod
    def _length(env, f: Path) -> int:
        with env.begin() as txn:
            raw = txn.get(b"length")
            if raw is None:
                if txn.get(b"nextid") is not None:
                    raise ValueError(f"{f}: an ASE-LMDB database (ase.db, .aselmdb), not fairchem's LMDB of "
                                     "pickled Data; read it with format='ase'")
                return int(env.stat()["entries"])
        try:
            length = pickle.loads(raw)
        except Exception as err:
            raise ValueError(f"{f}: its 'length' entry is not a pickled int ({type(err).__name__})") from None
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 0:
            raise ValueError(f"{f}: its 'length' entry is {length!r}, not a record count")
        return int(length)

    @staticmethod
    def _sniff(env, f: Path) -> None:
        # A file of the wrong kind fails here, when the dataset is built, not in a worker.
        with env.begin() as txn:
            raw = txn.get(b"0")
        if raw is None:
            raise ValueError(f"{f}: no record under key b'0'; not an OC20 LMDB (keys are record indices as ASCII)")
        try:
            obj = pickle.loads(raw)
        except Exception as err:
            raise ValueError(f"{f}: record 0 is not a pickled PyG Data ({type(err).__name__}: "
                             f"{str(err)[:120]}); the file holds something else") from None
        _record_fields(obj, f"{f}: record 0")

    def __len__(self) -> int:
        return self.ends[-1] if self.ends else 0

    def _locate(self, i: int) -> Tuple[int, int]:
        k = bisect.bisect_right(self.ends, i)
        return k, i - (self.ends[k - 1] if k else 0)

    def where(self, i: int) -> str:
        k, local = self._locate(i)
        return f"{self.files[k]}: record {local}"

    def read(self, i: int) -> Any:
        k, local = self._locate(i)
        with _lmdb_env(self.files[k], self.subdir).begin() as txn:
            raw = txn.get(str(local).encode("ascii"))
        where = f"{self.files[k]}: record {local}"
        if raw is None:
            raise ValueError(f"{where}: key b'{local}' is missing (the file declares {self.lengths[k]} records)")
        try:
            return pickle.loads(raw)
        except Exception as err:
            raise ValueError(f"{where}: cannot unpickle it ({type(err).__name__}: {str(err)[:120]})") from None


def _atoms_fields(atoms, where: str) -> Dict[str, Any]:
    """OC20 record fields of an :class:`ase.Atoms` (tags, fixed atoms from ``FixAtoms``,
    energy and forces from its calculator)."""
    from ase.constraints import FixAtoms

    n = len(atoms)
    fixed = np.zeros(n, dtype=bool)
    for c in atoms.constraints:
        if isinstance(c, FixAtoms):
            fixed[c.get_indices()] = True
    fields: Dict[str, Any] = {"atomic_numbers": atoms.numbers, K.POS: atoms.positions, K.CELL: atoms.cell.array,
                              K.PBC: atoms.pbc, TAGS: atoms.get_tags(), FIXED: fixed}
    results = getattr(atoms.calc, "results", None) or {}
    if "energy" in results:
        fields["energy"] = results["energy"]
    if "forces" in results:
        fields["forces"] = results["forces"]
    return fields


class _AseDbReader:
    """An ASE database; rows by id, the connection opened lazily in each process."""

    format = "ase"

    def __init__(self, path: Path, subtract_reference: bool):
        if path.suffix == ".aselmdb":
            try:
                import ase_db_backends  # noqa: F401
            except ImportError:
                raise ValueError(f"{path}: ASE reads .aselmdb databases through the optional package "
                                 "'ase-db-backends', which is not installed (pip install ase-db-backends), "
                                 "or convert the file with `ase db`") from None
        self.path = path
        self.subtract_reference = subtract_reference
        self._db = None
        self._pid: Optional[int] = None
        try:
            self.ids = [row.id for row in self._connect().select(include_data=False)]
        except ValueError:
            raise
        except Exception as err:
            raise ValueError(f"{path}: not a readable ASE database ({type(err).__name__}: {err})") from None
        finally:
            self._db, self._pid = None, None

    def _connect(self):
        import ase.db

        if self._db is None or self._pid != os.getpid():
            # append=True: never truncate the user's file.
            self._db = ase.db.connect(str(self.path), append=True, use_lock_file=False)
            self._pid = os.getpid()
        return self._db

    def __len__(self) -> int:
        return len(self.ids)

    def where(self, i: int) -> str:
        return f"{self.path}: row id={self.ids[i]}"

    def read(self, i: int) -> Dict[str, Any]:
        where = self.where(i)
        try:
            row = self._connect().get(id=self.ids[i])
            atoms = row.toatoms()
        except Exception as err:
            raise ValueError(f"{where}: cannot read it ({type(err).__name__}: {err})") from None
        fields = _atoms_fields(atoms, where)
        extra = {**dict(row.get("data") or {}), **dict(row.key_value_pairs)}
        for key in ("y", "y_init", "y_relaxed", "pos_relaxed", SID, FID, TAGS, FIXED):
            if key in extra:
                fields[key] = extra[key]
        fields.setdefault(SID, row.id)
        if self.subtract_reference and "energy" in fields and _REF_ENERGY in extra:
            fields["energy"] = float(fields["energy"]) - float(extra[_REF_ENERGY])
        return fields

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_db"], state["_pid"] = None, None
        return state


def _parse_id(text: str, prefix: str) -> Union[int, str]:
    text = text.strip()
    body = text[len(prefix):] if text.startswith(prefix) else text
    try:
        return int(body)
    except ValueError:
        return text


class _ExtxyzReader:
    """S2EF ``K.extxyz`` + ``K.txt`` pairs; frames located by byte offset when built."""

    format = "extxyz"

    def __init__(self, path: Path, subtract_reference: bool):
        if path.is_dir():
            files = sorted(path.glob("*.extxyz"))
            if not files:
                xz = sorted(path.glob("*.extxyz.xz"))
                hint = " (uncompress the .xz files first: xz -d *.xz)" if xz else ""
                raise ValueError(f"{path}: the folder holds no *.extxyz file{hint}")
        else:
            files = [path]
        self.files = files
        self.subtract_reference = subtract_reference
        file_of, offsets, sizes, logs = [], [], [], []
        for k, f in enumerate(files):
            txt = f.with_suffix(".txt")
            if not txt.is_file():
                raise ValueError(f"{f}: its frame log {txt.name} (system_id,frame_number,reference_energy per "
                                 "frame) is missing")
            starts = self._index(f)
            lines = [line for line in txt.read_text().splitlines() if line.strip()]
            if len(lines) != len(starts):
                raise ValueError(f"{txt}: {len(lines)} lines for the {len(starts)} frames of {f.name}")
            for j, (start, end) in enumerate(starts):
                file_of.append(k)
                offsets.append(start)
                sizes.append(end - start)
                logs.append(self._parse_log(lines[j], f"{txt}: line {j + 1}"))
        self.file_of = np.asarray(file_of, dtype=np.int64)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.sizes = np.asarray(sizes, dtype=np.int64)
        # Per-frame log as arrays (a few bytes per frame): ids as int64 unless one is a string.
        self.sids, self.fids = (self._ids([log[j] for log in logs]) for j in (0, 1))
        self.refs = np.asarray([np.nan if log[2] is None else log[2] for log in logs], dtype=np.float64)
        self._handles: Optional[dict] = None
        self._pid: Optional[int] = None

    @staticmethod
    def _index(f: Path) -> List[Tuple[int, int]]:
        """``(start, end)`` byte offsets of every frame of an (ext)xyz file."""
        starts = []
        with open(f, "rb") as fh:
            line_no = 0
            while True:
                start = fh.tell()
                head = fh.readline()
                line_no += 1
                if not head:
                    break
                if not head.strip():
                    continue
                try:
                    count = int(head.split()[0])
                except ValueError:
                    raise ValueError(f"{f}: line {line_no}: expected an atom count to start a frame, got "
                                     f"{head[:60].decode(errors='replace')!r}") from None
                for _ in range(count + 1):
                    if not fh.readline():
                        raise ValueError(f"{f}: the frame starting at line {line_no} is truncated "
                                         f"(it declares {count} atoms)")
                line_no += count + 1
                starts.append((start, fh.tell()))
        if not starts:
            raise ValueError(f"{f}: no frames")
        return starts

    @staticmethod
    def _ids(values: list) -> np.ndarray:
        if all(isinstance(v, int) for v in values):
            return np.asarray(values, dtype=np.int64)
        return np.asarray(values, dtype=object)

    @staticmethod
    def _parse_log(line: str, where: str) -> Tuple[Union[int, str], Union[int, str], Optional[float]]:
        parts = [p.strip() for p in line.split(",")]
        if len(parts) not in (2, 3):
            raise ValueError(f"{where}: expected 'system_id,frame_number,reference_energy', got {line!r}")
        ref = None
        if len(parts) == 3:
            try:
                ref = float(parts[2])
            except ValueError:
                raise ValueError(f"{where}: reference energy {parts[2]!r} is not a number") from None
            if not math.isfinite(ref):
                raise ValueError(f"{where}: reference energy is {parts[2]}")
        return _parse_id(parts[0], "random"), _parse_id(parts[1], "frame"), ref

    def __len__(self) -> int:
        return len(self.offsets)

    def where(self, i: int) -> str:
        return f"{self.files[int(self.file_of[i])]}: frame {i - int(np.searchsorted(self.file_of, self.file_of[i]))}"

    def read(self, i: int) -> Dict[str, Any]:
        from ase.io import read

        if self._handles is None or self._pid != os.getpid():
            self._handles, self._pid = {}, os.getpid()
        k = int(self.file_of[i])
        fh = self._handles.get(k)
        if fh is None:
            fh = self._handles[k] = open(self.files[k], "rb")
        fh.seek(int(self.offsets[i]))
        text = fh.read(int(self.sizes[i])).decode()
        where = self.where(i)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                atoms = read(io.StringIO(text), format="extxyz")
        except Exception as err:
            raise ValueError(f"{where}: not a readable extxyz frame ({type(err).__name__}: {err})") from None
        fields = _atoms_fields(atoms, where)
        fields[SID], fields[FID] = self.sids[i], self.fids[i]
        ref = float(self.refs[i])
        if self.subtract_reference and "energy" in fields:
            if math.isnan(ref):
                raise ValueError(f"{where}: its log line has no reference energy to subtract "
                                 "(pass subtract_reference=False for total energies)")
            fields["energy"] = float(fields["energy"]) - ref
        return fields

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_handles"], state["_pid"] = None, None
        return state


def _guess_format(path: Path) -> str:
    if path.is_dir():
        if (path / "data.mdb").is_file() or any(path.glob("*.lmdb")):
            return "lmdb"
        if any(path.glob("*.extxyz")) or any(path.glob("*.extxyz.xz")):
            return "extxyz"
        raise ValueError(f"path: {path} holds neither *.lmdb nor *.extxyz files; pass format= one of {FORMATS}")
    if path.suffix == ".lmdb":
        return "lmdb"
    if path.suffix in _ASE_SUFFIXES:
        return "ase"
    if path.suffix == ".extxyz":
        return "extxyz"
    raise ValueError(f"path: cannot tell the format of {path} from its name; pass format= one of {FORMATS}")


# --------------------------------------------------------------------------- dataset
class OC20(Dataset):
    r"""OC20 structures read lazily from fairchem's LMDBs, an ASE database or the S2EF
    extxyz + txt files (see :mod:`equigraph.datasets.oc20` for the formats and the keys of
    each graph), for the S2EF task (``energy`` eV, ``forces`` eV/Å) or IS2RE
    (``energy_relaxed`` eV from the initial structure ``pos``). ``tags`` and ``fixed`` are
    kept so that a model or a metric can mask subsurface or fixed atoms.

    Random access: ``len`` comes from the files' headers (LMDB ``length``, database ids,
    an index of the extxyz frame offsets built once), and ``dataset[i]`` reads and converts
    record ``i`` only. Files are opened once per process.

    Args:
        path (str or Path): a ``.lmdb`` file, a folder of ``*.lmdb`` shards, an ASE database,
            or a folder of S2EF ``*.extxyz`` + ``*.txt`` files (or one such file).
        task (str, optional): ``"s2ef"`` or ``"is2re"``. (default: :obj:`"s2ef"`)
        format (str, optional): one of :data:`FORMATS`; guessed from the path when
            :obj:`None`. (default: :obj:`None`)
        labels (bool, optional): require the task's labels (OC20 test sets have none).
            (default: :obj:`True`)
        subtract_reference (bool, optional): subtract the reference energy of each extxyz
            frame's log line, or an ASE row's ``ref_energy`` (adsorption energies, as in the
            LMDBs). (default: :obj:`True`)
        skip_invalid (bool, optional): skip invalid records instead of raising; every
            record is then checked once here, and the skipped ones are counted.
            (default: :obj:`False`)
        max_atoms (int, optional): memory budget per structure, in atoms; :obj:`None` for
            none. (default: :data:`DEFAULT_MAX_ATOMS`)
        dtype (torch.dtype, optional): floating dtype. (default: :obj:`torch.float32`)
        transform (callable, optional): PyG's. (default: :obj:`None`)

    Raises:
        ValueError: a missing path, an unknown task or format, a file of the wrong kind
            (named), and, when read, an invalid record (named by file and index).

    Example:
        >>> import tempfile
        >>> from equigraph.datasets.oc20_generate import generate_oc20_emt
        >>> root = generate_oc20_emt(tempfile.mkdtemp(), num_systems=4, max_steps=2, formats=("lmdb",))
        >>> ds = OC20(root / "s2ef" / "train")
        >>> d = ds[0]
        >>> sorted(d.keys())
        ['cell', 'energy', 'fid', 'fixed', 'forces', 'pbc', 'pos', 'sid', 'tags', 'z']
    """

    def __init__(self, path: Union[str, os.PathLike], task: str = "s2ef", format: Optional[str] = None,
                 labels: bool = True, subtract_reference: bool = True, skip_invalid: bool = False,
                 max_atoms: Optional[int] = DEFAULT_MAX_ATOMS, dtype: torch.dtype = torch.float32,
                 transform: Optional[Callable] = None):
        if task not in TASKS:
            raise ValueError(f"task: expected one of {TASKS}, got {task!r}")
        if format is not None and format not in FORMATS:
            raise ValueError(f"format: expected one of {FORMATS} or None, got {format!r}")
        if max_atoms is not None and (isinstance(max_atoms, bool) or not isinstance(max_atoms, int) or max_atoms < 1):
            raise ValueError(f"max_atoms: expected a positive int or None, got {max_atoms!r}")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"dtype: expected a floating torch.dtype, got {dtype!r}")
        path = Path(os.fspath(path)).expanduser()
        if not path.exists():
            raise ValueError(f"path: {path} does not exist")
        format = format or _guess_format(path)
        if format == "extxyz" and task != "s2ef":
            raise ValueError("format: the extxyz + txt layout is OC20's S2EF format; IS2RE comes as LMDB")
        self.path, self.task, self.format = path, task, format
        self.labels, self.max_atoms, self.dtype, self.skip_invalid = labels, max_atoms, dtype, skip_invalid
        if format == "lmdb":
            self.reader = _LmdbReader(path)
        elif format == "ase":
            self.reader = _AseDbReader(path, subtract_reference)
        else:
            self.reader = _ExtxyzReader(path, subtract_reference)
        super().__init__(None, transform)
        self.skipped: List[str] = []
        self._valid: Optional[np.ndarray] = None
        if skip_invalid:
            valid = []
            for i in range(len(self.reader)):
                try:
                    self._convert(i)
                except ValueError as err:
                    self.skipped.append(str(err))
                else:
                    valid.append(i)
            self._valid = np.asarray(valid, dtype=np.int64)
        if self.len() == 0:
            reason = f" ({self.num_skipped} invalid records skipped; first: {self.skipped[0]})" if self.skipped else ""
            raise ValueError(f"path: {path} holds no records{reason}")

    @property
    def num_skipped(self) -> int:
        """Records skipped as invalid (``skip_invalid=True``)."""
        return len(self.skipped)

    def _convert(self, i: int) -> Data:
        return record_to_data(self.reader.read(i), task=self.task, where=self.reader.where(i), labels=self.labels,
                              max_atoms=self.max_atoms, dtype=self.dtype)

    def len(self) -> int:
        return len(self.reader) if self._valid is None else len(self._valid)

    def get(self, idx: int) -> Data:
        return self._convert(int(idx) if self._valid is None else int(self._valid[idx]))

    def __repr__(self) -> str:
        skipped = f", skipped={self.num_skipped}" if self.skip_invalid else ""
        return f"OC20({len(self)}, task={self.task!r}, format={self.format!r}, path={str(self.path)!r}{skipped})"


# --------------------------------------------------------------------------- splits
class _OC20Splits(DataSplits):
    """:class:`DataSplits` whose :meth:`values` also gives ``[G, 1]`` for the IS2RE
    energies (per-graph scalars of ``energy``'s ``[1]`` shape; the base class reshapes
    ``y`` and ``energy`` only)."""

    def values(self, key: str, split: str = "train", level: Optional[str] = None) -> Tensor:
        out = super().values(key, split, level)
        return out.reshape(-1, 1) if key in (ENERGY_RELAXED, ENERGY_INIT) else out


def _first(dataset, n: Optional[int], what: str):
    if n is None:
        return dataset
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"data.{what}: must be a positive integer or null, got {n!r}")
    return dataset[: min(n, len(dataset))]


def oc20_splits(task: str = "s2ef", train: Optional[str] = None, val: Optional[str] = None,
                test: Optional[str] = None, format: Optional[str] = None, root: Optional[str] = None,
                num_systems: int = 60, max_steps: int = 20, seed: int = 0, skip_invalid: bool = False,
                max_atoms: Optional[int] = DEFAULT_MAX_ATOMS, subtract_reference: bool = True,
                max_train: Optional[int] = None, max_val: Optional[int] = None,
                max_test: Optional[int] = None):
    r"""The ``oc20`` dataset builder: :class:`~equigraph.datasets.DataSplits` of OC20 files
    (``train``, ``val``, ``test`` paths, e.g. OC20's ``train`` / ``val_id`` LMDB folders),
    or, when no path is given, of the OC20-like EMT data of
    :func:`equigraph.datasets.oc20_generate.generate_oc20_emt` (``num_systems`` relaxations
    of at most ``max_steps`` steps, cached under ``root``).

    Targets: S2EF ``energy`` (``energy``, eV, extensive) and ``forces`` (eV/Å); IS2RE
    ``relaxed_energy`` (data key ``energy_relaxed``, compared with the model's ``energy``:
    wrap the energy model in ``force_field`` with ``forces: false``).
    """
    if task not in TASKS:
        raise ValueError(f"data.task: expected one of {TASKS}, got {task!r}")
    paths = {"train": train, "val": val, "test": test}
    given = [k for k, v in paths.items() if v is not None]
    generated = not given
    if generated:
        from equigraph.datasets.oc20_generate import generate_oc20_emt

        fmt = format or "lmdb"
        if fmt not in FORMATS:
            raise ValueError(f"data.format: expected one of {FORMATS} or null, got {fmt!r}")
        if task == "is2re" and fmt != "lmdb":
            raise ValueError(f"data.format: the generated IS2RE data is written as LMDB only, got {fmt!r}")
        folder = generate_oc20_emt(root, num_systems=num_systems, max_steps=max_steps, seed=seed,
                                   formats=(fmt,) if task == "s2ef" else ("lmdb",))
        sub = {"lmdb": task, "extxyz": "s2ef_extxyz", "ase": "s2ef_ase"}[fmt]
        paths = {s: str(folder / sub / (f"{s}.db" if fmt == "ase" else s)) for s in paths}
    elif len(given) != 3:
        missing = [k for k in paths if paths[k] is None]
        raise ValueError(f"data: give train, val and test paths together (missing: {', '.join(missing)}), "
                         "or none for the generated EMT data")
    parts = {s: OC20(p, task=task, format=format if not generated else None, skip_invalid=skip_invalid,
                     max_atoms=max_atoms, subtract_reference=subtract_reference)
             for s, p in paths.items()}
    if task == "s2ef":
        targets = {"energy": TargetInfo(K.ENERGY, "graph", "eV", extensive=True),
                   "forces": TargetInfo(K.FORCES, "node", "eV/Å")}
    else:
        targets = {"relaxed_energy": TargetInfo(ENERGY_RELAXED, "graph", "eV", output=K.ENERGY, extensive=True)}
    return _OC20Splits(
        train=_first(parts["train"], max_train, "max_train"),
        val=_first(parts["val"], max_val, "max_val"),
        test=_first(parts["test"], max_test, "max_test"),
        targets=targets,
        info={"task": task, "generated": generated, "paths": paths,
              "skipped": {s: p.num_skipped for s, p in parts.items()}},
    )
