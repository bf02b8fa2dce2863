import os

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.db import connect
from ase.io import write

from equigraph.data import keys
from equigraph.datasets import AseDataset


def _cu_frames(n=4):
    frames = []
    for i in range(n):
        a = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((1, 1, 2))
        a.rattle(0.05, seed=i)
        a.calc = EMT()
        a.get_potential_energy(), a.get_forces(), a.get_stress()
        frames.append(a)
    return frames


def test_extxyz_dataset_with_energies_and_cache(tmp_path):
    frames = _cu_frames()
    path = tmp_path / "cu.extxyz"
    write(path, frames, format="extxyz")
    root = str(tmp_path / "cache")
    ds = AseDataset(path, root=root, log=False)
    assert len(ds) == 4 and ds[0].pbc.tolist() == [[True, True, True]]
    for d, a in zip(ds, frames):
        assert d[keys.ENERGY].item() == pytest.approx(a.get_potential_energy(), rel=1e-6)
        np.testing.assert_allclose(d[keys.FORCES].numpy(), a.get_forces(), atol=1e-5)
        assert d[keys.STRESS].shape == (1, 3, 3)
    processed = ds.processed_paths[0]
    mtime = os.path.getmtime(processed)
    assert len(AseDataset(path, root=root, log=False)) == 4
    assert os.path.getmtime(processed) == mtime
    # An edited source is reprocessed into a new cache file.
    write(path, frames[:2], format="extxyz")
    assert len(AseDataset(path, root=root, log=False)) == 2


def test_transforms_and_index(tmp_path):
    path = tmp_path / "mols.xyz"
    write(path, [molecule(n) for n in ("H2O", "NH3", "CH4", "C6H6")])

    def add_count(d):
        d.count = torch.tensor([d.num_nodes])
        return d

    ds = AseDataset(path, root=str(tmp_path / "c"), index="1:", pre_transform=add_count,
                    pre_filter=lambda d: d.num_nodes < 10, transform=lambda d: d, log=False)
    assert [d.count.item() for d in ds] == [4, 5]


def test_database_with_select(tmp_path):
    path = tmp_path / "cu.db"
    with connect(path) as db:
        for i, a in enumerate(_cu_frames(3)):
            db.write(a, group="a" if i < 2 else "b")
    ds = AseDataset(path, root=str(tmp_path / "c"), select="group=a", log=False)
    assert len(ds) == 2 and ds[0][keys.ENERGY].shape == (1,)
    assert len(AseDataset(path, root=str(tmp_path / "c"), log=False)) == 3
    with pytest.raises(ValueError, match="no structures"):
        AseDataset(path, root=str(tmp_path / "c"), select="group=zzz", log=False)


def test_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        AseDataset(tmp_path / "missing.xyz", root=str(tmp_path))
    path = tmp_path / "bad.xyz"
    path.write_text("1\nc\nH 0 0 zero\n")
    with pytest.raises(ValueError, match="bad.xyz: line 3"):
        AseDataset(path, root=str(tmp_path / "c"), log=False)
    good = tmp_path / "good.xyz"
    write(good, molecule("H2O"))
    with pytest.raises(ValueError, match="select: only applies"):
        AseDataset(good, root=str(tmp_path / "c"), select="natoms=3", log=False)
    with pytest.raises(ValueError, match="index"):
        AseDataset(good, root=str(tmp_path / "c"), index=0, log=False)
