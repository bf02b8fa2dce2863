"""OC20 readers on files written in OC20's formats by the EMT generator: fairchem LMDBs
(current and PyG 1.x pickles), S2EF extxyz + txt, ASE databases; lazy, fork-safe access;
one error per kind of bad input."""
import pickle

import lmdb
import numpy as np
import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from equigraph.data import keys as K
from equigraph.datasets.oc20 import (
    ENERGY_INIT,
    ENERGY_RELAXED,
    FIXED,
    OC20,
    POS_RELAXED,
    TAGS,
    oc20_splits,
    record_to_data,
)
from equigraph.datasets.oc20_generate import (
    generate_oc20_emt,
    generate_systems,
    is2re_record,
    s2ef_record,
    write_lmdb,
    write_s2ef_extxyz,
)

NUM_SYSTEMS, MAX_STEPS = 6, 3


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    # One cache for every OC20 test module (same options, same digest folder).
    return generate_oc20_emt(tmp_path_factory.getbasetemp() / "oc20_emt", num_systems=NUM_SYSTEMS,
                             max_steps=MAX_STEPS)


@pytest.fixture(scope="module")
def system():
    return generate_systems(1, seed=3, max_steps=2)[0]


def _same(a: Data, b: Data, atol=1e-5):
    assert a.z.tolist() == b.z.tolist()
    for key in (K.POS, K.CELL, K.ENERGY, K.FORCES):
        assert torch.allclose(a[key], b[key], atol=atol), key
    for key in (K.PBC, TAGS, FIXED, "sid", "fid"):
        assert torch.equal(a[key], b[key]), key


def test_generated_layout_and_oc20_conventions(root):
    import json

    manifest = json.loads((root / "manifest.json").read_text())
    assert sum(len(v) for v in manifest["sids"].values()) == NUM_SYSTEMS
    assert sorted(p.name for p in (root / "s2ef" / "train").iterdir()) == ["data.0000.lmdb", "data.0001.lmdb"]
    ds = OC20(root / "s2ef" / "train")
    assert len(ds) == manifest["frames"]["train"]
    for d in (ds[0], ds[len(ds) - 1]):
        assert d.pbc.tolist() == [[True, True, True]]
        assert set(d.tags.tolist()) == {0, 1, 2}
        assert torch.equal(d.fixed, d.tags == 0)  # subsurface atoms are the fixed ones
        assert float(d.forces[d.fixed].abs().max()) > 0  # forces on every atom, fixed ones too
        assert d.z[d.tags == 2].tolist() and set(d.z[d.tags == 2].tolist()) <= {1, 6, 7, 8}
        assert float(torch.linalg.det(d.cell[0]).abs()) > 100


def test_lmdb_extxyz_and_ase_db_agree(root):
    lmdb_ds = OC20(root / "s2ef" / "train")
    xyz = OC20(root / "s2ef_extxyz" / "train")
    db = OC20(root / "s2ef_ase" / "train.db")
    assert (lmdb_ds.format, xyz.format, db.format) == ("lmdb", "extxyz", "ase")
    assert len(lmdb_ds) == len(xyz) == len(db)
    for i in range(len(lmdb_ds)):  # shard 0 holds current PyG pickles, shard 1 PyG 1.x ones
        _same(lmdb_ds[i], xyz[i])
        _same(lmdb_ds[i], db[i])
    total = OC20(root / "s2ef_extxyz" / "train", subtract_reference=False)
    assert float(total[0].energy - xyz[0].energy) != 0  # the log's reference energy was subtracted


def test_is2re_pairs_match_the_relaxation(root):
    is2re = OC20(root / "is2re" / "train", task="is2re")
    s2ef = OC20(root / "s2ef" / "train")
    frames = {}
    for i in range(len(s2ef)):
        d = s2ef[i]
        frames.setdefault(int(d.sid), {})[int(d.fid)] = d
    assert len(is2re) == len(frames)
    for i in range(len(is2re)):
        d = is2re[i]
        traj = frames[int(d.sid)]
        first, last = traj[0], traj[max(traj)]
        assert torch.allclose(d.pos, first.pos) and torch.allclose(d[POS_RELAXED], last.pos)
        assert torch.allclose(d[ENERGY_INIT], first.energy) and torch.allclose(d[ENERGY_RELAXED], last.energy)
        assert K.ENERGY not in d and K.FORCES not in d


def test_record_styles_convert_alike(system, tmp_path):
    rec = s2ef_record(system, 1)
    paths = {style: write_lmdb(tmp_path / f"{style}.lmdb", [rec], style=style) for style in ("current", "old", "dict")}
    graphs = [OC20(p)[0] for p in paths.values()]
    for g in graphs[1:]:
        _same(graphs[0], g, atol=0)
    # a PyG 1.x pickle really lacks _store: current PyG cannot read its attributes
    from equigraph.datasets.oc20 import _lmdb_env

    with _lmdb_env(paths["old"], False).begin() as txn:  # the reader's handle (py-lmdb allows one)
        old = pickle.loads(txn.get(b"0"))
    assert "_store" not in old.__dict__
    with pytest.raises(RuntimeError, match="older version of PyG"):
        old.pos  # noqa: B018


def test_lmdb_without_length_key_and_single_file(system, tmp_path):
    path = write_lmdb(tmp_path / "x.lmdb", [s2ef_record(system, t) for t in range(3)], length_key=False)
    ds = OC20(path)
    assert len(ds) == 3 and ds[2].fid.tolist() == [2]


def test_lazy_picklable_and_fork_safe(root):
    import os

    from equigraph.datasets import oc20

    ds = OC20(root / "s2ef" / "train")
    twin = OC20(root / "s2ef" / "train")  # the same files open twice in one process share one handle
    first = ds[0]
    _same(twin[0], first, atol=0)
    again = pickle.loads(pickle.dumps(ds))  # what a spawned worker receives: no handle travels
    _same(again[0], first, atol=0)
    assert oc20._ENVS_PID[0] == os.getpid()
    # Forked workers after the parent read: each closes the inherited handles and opens its own.
    serial = [b.energy for b in DataLoader(ds, batch_size=4)]
    forked = [b.energy for b in DataLoader(ds, batch_size=4, num_workers=2)]
    assert len(serial) == len(forked) and all(torch.equal(a, b) for a, b in zip(serial, forked))
    _same(ds[1], twin[1], atol=0)  # the parent still reads after its children closed their copies


def test_slicing_transform_and_batching(root):
    ds = OC20(root / "s2ef" / "train", transform=lambda d: d.update({"seen": torch.ones(1)}) or d)
    part = ds[2:5]
    assert len(part) == 3 and part[0].seen.tolist() == [1.0]
    _same(part[0], ds[2])
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert batch.cell.shape == (3, 3, 3) and batch.pbc.shape == (3, 3) and batch.sid.shape == (3,)


def test_splits_builder_on_generated_data(root, tmp_path_factory):
    base = tmp_path_factory.getbasetemp() / "oc20_emt"
    splits = oc20_splits(root=str(base), num_systems=NUM_SYSTEMS, max_steps=MAX_STEPS, max_train=5)
    assert len(splits.train) == 5 and set(splits.targets) == {"energy", "forces"}
    assert splits.targets["energy"].extensive and splits.info["generated"]
    is2re = oc20_splits(task="is2re", root=str(base), num_systems=NUM_SYSTEMS, max_steps=MAX_STEPS)
    info = is2re.targets["relaxed_energy"]
    assert (info.key, info.model_output, info.level) == (ENERGY_RELAXED, K.ENERGY, "graph")
    assert splits.values(K.ENERGY).shape == (5, 1)
    assert is2re.values(ENERGY_RELAXED, "test").shape == (len(is2re.test), 1)
    xyz = oc20_splits(root=str(base), num_systems=NUM_SYSTEMS, max_steps=MAX_STEPS, format="extxyz")
    _same(xyz.test[0], splits.test[0])
    given = oc20_splits(train=str(root / "s2ef" / "train"), val=str(root / "s2ef" / "val"),
                        test=str(root / "s2ef" / "test"))
    assert not given.info["generated"] and len(given.val) == len(splits.val)


def test_registry_entry(root, tmp_path_factory):
    from equigraph.datasets.registry import DATASETS, build_splits

    if "oc20" not in DATASETS:
        DATASETS.register("oc20", oc20_splits)
    splits = build_splits({"name": "oc20", "task": "is2re", "root": str(tmp_path_factory.getbasetemp() / "oc20_emt"),
                           "num_systems": NUM_SYSTEMS, "max_steps": MAX_STEPS})
    assert ENERGY_RELAXED in splits.train[0]
    with pytest.raises(ValueError, match="task must be str"):
        build_splits({"name": "oc20", "task": 1})


# --------------------------------------------------------------------------- bad input
def _lmdb_of(tmp_path, records, name="bad.lmdb", style="current"):
    return write_lmdb(tmp_path / name, records, style=style)


def test_missing_path_and_unknown_options(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        OC20(tmp_path / "nope.lmdb")
    with pytest.raises(ValueError, match="task: expected one of"):
        OC20(tmp_path, task="is2rs")
    with pytest.raises(ValueError, match="format: expected one of"):
        OC20(tmp_path, format="hdf5")
    with pytest.raises(ValueError, match="holds neither"):
        OC20(tmp_path)
    (tmp_path / "a.cif").write_text("x")
    with pytest.raises(ValueError, match="cannot tell the format"):
        OC20(tmp_path / "a.cif")
    with pytest.raises(ValueError, match="max_atoms: expected a positive int"):
        OC20(tmp_path, max_atoms=0)


def test_file_that_is_not_an_lmdb(tmp_path):
    path = tmp_path / "fake.lmdb"
    path.write_bytes(b"not an lmdb at all" * 300)
    with pytest.raises(ValueError, match=r"fake\.lmdb: not a readable LMDB file"):
        OC20(path)


def test_lmdb_holding_something_else(tmp_path):
    path = tmp_path / "other.lmdb"
    with lmdb.open(str(path), subdir=False, map_size=1 << 20) as env, env.begin(write=True) as txn:
        txn.put(b"0", b"\x00\x01 raw bytes, no pickle")
    with pytest.raises(ValueError, match=r"record 0 is not a pickled PyG Data .* holds something else"):
        OC20(path)
    path = tmp_path / "list.lmdb"
    with lmdb.open(str(path), subdir=False, map_size=1 << 20) as env, env.begin(write=True) as txn:
        txn.put(b"0", pickle.dumps([1, 2, 3]))
    with pytest.raises(ValueError, match=r"record 0: holds a builtins.list, not a PyG Data or a dict"):
        OC20(path)
    path = tmp_path / "keys.lmdb"
    with lmdb.open(str(path), subdir=False, map_size=1 << 20) as env, env.begin(write=True) as txn:
        txn.put(b"a", pickle.dumps({}))
    with pytest.raises(ValueError, match=r"no record under key b'0'"):
        OC20(path)
    path = tmp_path / "asedb.lmdb"  # what an ASE-LMDB database holds
    with lmdb.open(str(path), subdir=False, map_size=1 << 20) as env, env.begin(write=True) as txn:
        txn.put(b"nextid", b"x")
    with pytest.raises(ValueError, match="an ASE-LMDB database"):
        OC20(path)


def test_empty_lmdb_and_missing_key(system, tmp_path):
    with pytest.raises(ValueError, match="holds no records"):
        OC20(_lmdb_of(tmp_path, [], "empty.lmdb"))
    path = _lmdb_of(tmp_path, [s2ef_record(system, 0)], "short.lmdb")
    with lmdb.open(str(path), subdir=False, map_size=1 << 20) as env, env.begin(write=True) as txn:
        txn.put(b"length", pickle.dumps(2))
    ds = OC20(path)
    with pytest.raises(ValueError, match=r"short\.lmdb: record 1: key b'1' is missing \(the file declares 2"):
        ds[1]


def _without(rec, key):
    return {k: v for k, v in rec.items() if k != key}


@pytest.mark.parametrize("edit, match", [
    (lambda r: _without(r, "force"), r"record 1: no 'forces' or 'force' \(S2EF forces\)"),
    (lambda r: _without(r, "tags"), r"record 1: no 'tags'"),
    (lambda r: _without(r, "pos"), r"record 1: no 'pos'"),
    (lambda r: {**r, "cell": torch.zeros(1, 3, 3)}, r"record 1: 'cell' has zero volume"),
    (lambda r: {**r, "atomic_numbers": r["atomic_numbers"] * 0 + 200}, r"record 1: atomic number 200 .* outside"),
    (lambda r: {**r, "atomic_numbers": r["atomic_numbers"] * 0}, r"atomic number 0 \(atom 0\) is outside"),
    (lambda r: {**r, "atomic_numbers": r["atomic_numbers"] + 0.5}, "non-integer atomic numbers"),
    (lambda r: {**r, "natoms": 3}, "'natoms' is \\[3\\] but 'atomic_numbers' has"),
    (lambda r: {**r, "pos": r["pos"][:2]}, r"'pos' has shape \[2, 3\], expected"),
    (lambda r: {**r, "pos": r["pos"] * float("nan")}, "'pos' contains NaN or inf"),
    (lambda r: {**r, "y": "high"}, "'y' is not numeric"),
    (lambda r: {**r, "sid": 1.5}, "'sid' must be one integer or a string"),
])
def test_bad_records_are_named(system, tmp_path, edit, match):
    good = s2ef_record(system, 0)
    path = _lmdb_of(tmp_path, [good, edit(s2ef_record(system, 1)), good], style="old")
    ds = OC20(path)
    ds[0]
    with pytest.raises(ValueError, match=match):
        ds[1]
    assert str(path) in _error(ds, 1)
    skipping = OC20(path, skip_invalid=True)
    assert len(skipping) == 2 and skipping.num_skipped == 1 and "record 1" in skipping.skipped[0]
    assert "skipped=1" in repr(skipping)


def _error(ds, i):
    try:
        ds[i]
    except ValueError as err:
        return str(err)
    raise AssertionError("no error")


def test_memory_budget_and_task_hints(system, tmp_path):
    path = _lmdb_of(tmp_path, [s2ef_record(system, 0)])
    n = len(system.numbers)
    with pytest.raises(ValueError, match=rf"record 0: {n} atoms exceed max_atoms=5, the memory budget"):
        OC20(path, max_atoms=5)[0]
    assert OC20(path, max_atoms=n)[0].num_nodes == n
    with pytest.raises(ValueError, match="looks like an S2EF record .* pass task='s2ef'"):
        OC20(path, task="is2re")[0]
    is2re = _lmdb_of(tmp_path, [is2re_record(system)], "is2re.lmdb")
    with pytest.raises(ValueError, match="looks like an IS2RE record .* pass task='is2re'"):
        OC20(is2re)[0]
    unlabelled = _lmdb_of(tmp_path, [_without(_without(s2ef_record(system, 0), "y"), "force")], "test.lmdb")
    d = OC20(unlabelled, labels=False)[0]
    assert K.ENERGY not in d and K.FORCES not in d
    with pytest.raises(ValueError, match="all invalid|holds no records"):
        OC20(_lmdb_of(tmp_path, [s2ef_record(system, 0)], "all.lmdb"), max_atoms=2, skip_invalid=True)


def test_extxyz_errors(system, tmp_path):
    folder = tmp_path / "xyz"
    write_s2ef_extxyz(folder, [system])
    assert len(OC20(folder)) == system.num_frames
    log = folder / "0.txt"
    lines = log.read_text().splitlines()
    log.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(ValueError, match=rf"0\.txt: {len(lines) - 1} lines for the {len(lines)} frames"):
        OC20(folder)
    log.write_text("\n".join(lines[:-1] + ["random0,frame9,abc"]) + "\n")
    with pytest.raises(ValueError, match=rf"line {len(lines)}: reference energy 'abc' is not a number"):
        OC20(folder)
    log.unlink()
    with pytest.raises(ValueError, match="its frame log 0.txt .* is missing"):
        OC20(folder)
    with pytest.raises(ValueError, match="extxyz \\+ txt layout is OC20's S2EF format"):
        OC20(folder, task="is2re", format="extxyz")
    text = (folder / "0.extxyz").read_text().splitlines()
    (folder / "0.extxyz").write_text("\n".join(text[:-3]) + "\n")
    log.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="is truncated"):
        OC20(folder)
    (folder / "0.extxyz").write_text("not a count\n")
    with pytest.raises(ValueError, match="line 1: expected an atom count"):
        OC20(folder)


def test_ase_db_errors(tmp_path):
    path = tmp_path / "broken.db"
    path.write_bytes(b"garbage" * 100)
    with pytest.raises(ValueError, match=r"broken\.db: not a readable ASE database"):
        OC20(path)
    try:
        import ase_db_backends  # noqa: F401
    except ImportError:
        lm = tmp_path / "data.aselmdb"
        lm.write_bytes(b"")
        with pytest.raises(ValueError, match="optional package 'ase-db-backends'"):
            OC20(lm)


def test_record_to_data_defaults():
    rec = {"atomic_numbers": torch.tensor([29.0, 8.0]), "pos": torch.zeros(2, 3) + torch.tensor([[0.0], [1.8]]),
           "cell": 8 * torch.eye(3), "tags": np.array([0, 2]), "y": -1.0, "force": torch.zeros(2, 3),
           "sid": "random42"}
    d = record_to_data(rec, dtype=torch.float64)
    assert d.fixed.tolist() == [True, False] and d.pos.dtype == torch.float64 and d.sid == "random42"
    d = record_to_data({**rec, "pbc": [True, True, False], "fixed": [0.0, 0.0]})
    assert d.pbc.tolist() == [[True, True, False]] and d.fixed.tolist() == [False, False]
    with pytest.raises(ValueError, match="task: expected one of"):
        record_to_data(rec, task="s2")


def test_extxyz_ids_that_are_not_numbers(system, tmp_path):
    folder = tmp_path / "xyz"
    write_s2ef_extxyz(folder, [system])
    log = folder / "0.txt"
    lines = log.read_text().splitlines()
    log.write_text("\n".join(f"slab-{t},frame{t}" for t in range(len(lines))) + "\n")
    ds = OC20(folder, subtract_reference=False)
    assert ds[1].sid == "slab-1" and ds[1].fid.tolist() == [1]
    assert float(ds[0].energy) == pytest.approx(float(system.energies[0]), abs=1e-6)  # total energy
    with pytest.raises(ValueError, match="no reference energy to subtract"):
        OC20(folder)[0]
