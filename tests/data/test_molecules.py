import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from rdkit import Chem
from rdkit.Chem import AllChem
from torch_geometric.data import Batch

from equigraph.data import read_molecules


def _sdf(path, smiles, names=()):
    writer = Chem.SDWriter(str(path))
    for i, smi in enumerate(smiles):
        mol = Chem.AddHs(Chem.MolFromSmiles(smi))
        AllChem.EmbedMolecule(mol, randomSeed=1)
        if i < len(names) and names[i]:
            mol.SetProp("_Name", names[i])
        writer.write(mol)
    writer.close()
    return path


def test_sdf_and_mol_through_rdkit(tmp_path):
    path = _sdf(tmp_path / "m.sdf", ["CCO", "O"], ["ethanol"])
    graphs = read_molecules(path)
    assert [g.name for g in graphs] == ["ethanol", f"{path}[1]"]
    assert [g.num_nodes for g in graphs] == [9, 3]
    mol = tmp_path / "one.MOL"
    mol.write_text(Chem.MolToMolBlock(Chem.MolFromMolFile(str(path), removeHs=False)))
    assert read_molecules(mol)[0].num_nodes == 9


def test_sdf_embed_is_passed_on(tmp_path):
    flat = Chem.MolFromSmiles("CCO")
    AllChem.Compute2DCoords(flat)
    path = tmp_path / "flat.sdf"
    path.write_text(Chem.MolToMolBlock(flat) + "$$$$\n")
    with pytest.raises(ValueError, match=r"flat.sdf: record 0: .*2D depiction"):
        read_molecules(path)
    assert read_molecules(path, embed=True)[0].num_nodes == 9


@pytest.mark.parametrize("fmt,name", [("extxyz", "w.extxyz"), ("xyz", "w.xyz"), ("proteindatabank", "w.pdb"),
                                      ("cif", "w.cif")])
def test_ase_formats_geometry_as_given(tmp_path, fmt, name):
    # ASE's PDB writer repeats the first frame's symbols, so every frame is one molecule.
    frames = [molecule("CH3CH2OH"), molecule("CH3CH2OH")]
    frames[1].rattle(0.1, seed=3)
    for a in frames:
        if fmt == "cif":
            a.center(vacuum=3.0)
    path = tmp_path / name
    write(path, frames, format=fmt)
    graphs = read_molecules(path)
    assert [g.name for g in graphs] == [f"{path}[0]", f"{path}[1]"]
    for g, a in zip(graphs, frames):
        assert g.z.tolist() == a.numbers.tolist()
        np.testing.assert_allclose(g.pos.double().numpy(), a.positions, atol=1e-3)
    Batch.from_data_list(graphs)


def test_extxyz_names_and_labels_are_kept(tmp_path):
    frames = [molecule("H2O"), molecule("NH3")]
    frames[0].info["name"] = "water"
    for i, a in enumerate(frames):
        a.calc = SinglePointCalculator(a, energy=-float(i))
    path = tmp_path / "l.extxyz"
    write(path, frames, format="extxyz")
    graphs = read_molecules(path, dtype=torch.float64)
    assert [g.name for g in graphs] == ["water", f"{path}[1]"]
    assert [g.energy.item() for g in graphs] == [0.0, -1.0]


def test_plain_xyz_comments_do_not_break_batching(tmp_path):
    # ASE turns the words of a plain XYZ comment into flags; frames with different comments
    # must still batch.
    path = tmp_path / "c.xyz"
    path.write_text("2\nfirst frame\nH 0 0 0\nH 0 0 0.74\n1\nsecond\nHe 0 0 0\n")
    with pytest.warns(UserWarning, match=r"c.xyz: .*dropped"):
        graphs = read_molecules(path)
    assert Batch.from_data_list(graphs).num_graphs == 2


def test_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"missing.sdf: no such file"):
        read_molecules(tmp_path / "missing.sdf")
    with pytest.raises(ValueError, match=r"missing.xyz: no such file"):
        read_molecules(tmp_path / "missing.xyz")
    empty = tmp_path / "empty.sdf"
    empty.write_text("")
    with pytest.raises(ValueError, match=r"empty.sdf: .*no records"):
        read_molecules(empty)
    blank = tmp_path / "blank.sdf"
    blank.write_text("\n\n")
    with pytest.raises(ValueError, match=r"blank.sdf: "):
        read_molecules(blank)
    uuo = tmp_path / "uuo.xyz"
    uuo.write_text("2\nc\nUuo 0 0 0\nH 0 0 1\n")
    with pytest.raises(ValueError, match=r"uuo.xyz: line 3: unknown element symbol 'Uuo'"):
        read_molecules(uuo)
    nan = tmp_path / "nan.xyz"
    nan.write_text("1\na\nH 0 0 0\n1\nb\nH 0 nan 0\n")
    with pytest.raises(ValueError, match=r"nan.xyz: frame 1: .*not finite"):
        read_molecules(nan)
    other = tmp_path / "notes.foo"
    other.write_text("hello\n")
    with pytest.raises(ValueError, match=r"notes.foo: ASE cannot read this format"):
        read_molecules(other)
    with pytest.raises(ValueError, match=r"is a directory"):
        read_molecules(tmp_path)


def test_sdf_properties_are_optional_per_record(tmp_path):
    writer = Chem.SDWriter(str(tmp_path / "p.sdf"))
    for smi, props in (("CCO", {"energy": "-1.0", "homo": "-0.2"}), ("CC", {"lumo": "0.1"})):
        mol = Chem.AddHs(Chem.MolFromSmiles(smi))
        AllChem.EmbedMolecule(mol, randomSeed=1)
        for k, v in props.items():
            mol.SetProp(k, v)
        writer.write(mol)
    writer.close()
    with pytest.warns(UserWarning, match=r"p.sdf: .*'energy', 'homo', 'lumo'"):
        graphs = read_molecules(tmp_path / "p.sdf")
    assert Batch.from_data_list(graphs).num_graphs == 2
    assert [set(g.keys()) for g in graphs] == [{"z", "pos", "name"}] * 2
