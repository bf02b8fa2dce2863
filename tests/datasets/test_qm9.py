import os

import numpy as np
import pytest
import torch

from equigraph.data import keys
from equigraph.datasets import QM9
from equigraph.datasets.qm9 import TARGET_NAMES, TARGETS, split_indices, target_index

HA_TO_MEV = 27211.386245988
# QM9 atomref.txt, Hartree: U0 of the isolated atoms.
U0_REF = {"H": -0.500273, "C": -37.846772, "N": -54.583861, "O": -75.064579}
U298_REF = {"H": -0.498857, "O": -75.063162}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("qm9"))


@pytest.fixture(scope="module")
def small(root):
    return QM9(root=root, max_molecules=40, log=False)


def _by_id(ds, gdb_id):
    i = (ds._data.gdb_id == gdb_id).nonzero().item()
    return ds[i]


def test_targets_match_csv_with_hand_conversions(small):
    assert len(small) == 40 and small.target_names == list(TARGET_NAMES)
    col = {n: i for i, n in enumerate(TARGET_NAMES)}
    # gdb 1, methane, qm9pack row: gap 0.5048 Ha, U0 -40.47893 Ha, mu 0 D, alpha 13.21, Cv 6.469.
    ch4 = _by_id(small, 1).y[0].double()
    assert ch4[col["gap"]].item() == pytest.approx(0.5048 * HA_TO_MEV, rel=1e-6)
    assert ch4[col["homo"]].item() == pytest.approx(-0.3877 * HA_TO_MEV, rel=1e-6)
    assert ch4[col["zpve"]].item() == pytest.approx(0.044749 * HA_TO_MEV, rel=1e-6)
    u0_atomisation = -40.47893 - (U0_REF["C"] + 4 * U0_REF["H"])
    assert ch4[col["U0"]].item() == pytest.approx(u0_atomisation * HA_TO_MEV, rel=1e-6)
    assert ch4[col["U0_total"]].item() == pytest.approx(-40.47893 * 27.211386245988, rel=1e-6)
    assert ch4[col["alpha"]].item() == pytest.approx(13.21, rel=1e-6)
    assert ch4[col["Cv"]].item() == pytest.approx(6.469, rel=1e-6)
    # gdb 2, ammonia: mu 1.6256 D, r2 26.1563 a0^2.
    nh3 = _by_id(small, 2).y[0]
    assert nh3[col["mu"]].item() == pytest.approx(1.6256, rel=1e-6)
    assert nh3[col["r2"]].item() == pytest.approx(26.1563, rel=1e-6)
    # gdb 3, water: U(298 K) -76.401867 Ha.
    h2o = _by_id(small, 3).y[0].double()
    u_atomisation = -76.401867 - (U298_REF["O"] + 2 * U298_REF["H"])
    assert h2o[col["U"]].item() == pytest.approx(u_atomisation * HA_TO_MEV, rel=1e-6)
    assert h2o[col["lumo"]].item() == pytest.approx(0.0687 * HA_TO_MEV, rel=1e-6)


def test_methane_geometry_and_fields(small):
    ch4 = _by_id(small, 1)
    assert ch4.z.tolist() == [6, 1, 1, 1, 1]
    assert ch4.pos.dtype == torch.float32 and ch4.y.shape == (1, len(TARGETS))
    d = (ch4.pos[1:] - ch4.pos[0]).norm(dim=-1)
    assert torch.allclose(d, torch.full((4,), 1.0919), atol=2e-3)
    assert ch4[keys.CHARGES].sum().item() == pytest.approx(0.0, abs=1e-5)


def test_processed_once_and_cached(root, small):
    path = small.processed_paths[0]
    mtime = os.path.getmtime(path)
    again = QM9(root=root, max_molecules=40, log=False)
    assert os.path.getmtime(path) == mtime
    assert torch.equal(again._data.y, small._data.y)


def test_target_selection_and_units(root):
    ds = QM9(root=root, max_molecules=40, target="gap", log=False)
    assert ds.unit == "meV" and ds[0].y.shape == (1, 1)
    multi = QM9(root=root, max_molecules=40, target=["mu", "Cv", "U0_total"], log=False)
    assert multi.units == ["D", "cal/(mol K)", "eV"]
    with pytest.raises(ValueError, match="2 columns|3 columns"):
        multi.unit
    assert target_index("CV") == [11]
    with pytest.raises(ValueError, match="unknown QM9 target 'energy'"):
        QM9(root=root, max_molecules=40, target="energy", log=False)


def test_subsets_are_disjoint_and_cover(root, small):
    parts = {s: QM9(root=root, max_molecules=40, subset=s, log=False) for s in ("train", "val", "test")}
    ids = {s: set(p._data.gdb_id[p.indices()].tolist()) for s, p in parts.items()}
    assert sum(len(v) for v in ids.values()) == 40
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"] and not ids["val"] & ids["test"]
    assert set.union(*ids.values()) == set(small._data.gdb_id.tolist())
    cut = QM9(root=root, max_molecules=40, subset="train", max_train=5, log=False)
    assert len(cut) == 5 and set(cut._data.gdb_id[cut.indices()].tolist()) <= ids["train"]


def test_named_split_sizes_and_disjointness():
    for name, sizes in (("egnn", (100_000, 17_748, 13_083)), ("dimenet", (110_000, 10_000, 10_831))):
        s = split_indices(name, 130_831)
        assert tuple(len(s[k]) for k in ("train", "val", "test")) == sizes
        everything = torch.cat([s["train"], s["val"], s["test"]])
        assert torch.equal(everything.sort().values, torch.arange(130_831))


def test_egnn_split_is_cormorants():
    # Cormorant / EGNN: np.random.seed(0); permutation; split at 100000 and 117748.
    np.random.seed(0)
    perm = np.random.permutation(130_831)
    s = split_indices("egnn", 130_831)
    assert np.array_equal(s["train"].numpy(), perm[:100_000])
    assert np.array_equal(s["test"].numpy(), perm[117_748:])


def test_split_seed_and_scaling():
    a, b = split_indices("egnn", 1000, seed=1), split_indices("egnn", 1000, seed=1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["train"], split_indices("egnn", 1000, seed=2)["train"])
    assert len(a["train"]) == round(1000 * 100_000 / 130_831) and len(a["test"]) == 100


def test_pre_transform_path_matches_direct_collation(tmp_path, small):
    def add_one(d):
        d.tag = torch.ones(1)
        return d

    ds = QM9(root=str(tmp_path), max_molecules=40, pre_transform=add_one, log=False)
    assert torch.equal(ds._data.y, small._data.y) and torch.equal(ds._data.pos, small._data.pos)
    assert ds[3].tag.tolist() == [1.0]
    filtered = QM9(root=str(tmp_path / "f"), max_molecules=40, pre_filter=lambda d: d.num_nodes > 5, log=False)
    assert all(d.num_nodes > 5 for d in filtered)


def test_atomref_of_totals():
    ref = QM9.atomref("U0_total")
    assert ref.shape == (10, 1) and ref[1, 0].item() == pytest.approx(-0.500273 * 27.211386245988)
    assert QM9.atomref("gap") is None


def test_bad_arguments(root):
    with pytest.raises(ValueError, match="split: unknown split 'random'"):
        QM9(root=root, max_molecules=40, split="random", log=False)
    with pytest.raises(ValueError, match="subset"):
        QM9(root=root, max_molecules=40, subset="training", log=False)
    with pytest.raises(ValueError, match="max_molecules"):
        QM9(root=root, max_molecules=0, log=False)
    with pytest.raises(ValueError, match="max_train"):
        QM9(root=root, max_molecules=40, max_train=-1, log=False)
    with pytest.raises(ValueError, match="source"):
        QM9(root=root, source="web", log=False)
    with pytest.raises(FileNotFoundError, match="gdb9.sdf"):
        QM9(root=root, source="sdf", log=False)
    with pytest.raises(ValueError, match="num"):
        split_indices("egnn", 2)
