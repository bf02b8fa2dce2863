import pytest
import torch
from rdkit import Chem
from torch_geometric.data import Data

from equigraph.data.featurizers import (
    Aromatic,
    AtomFeatures,
    ChargePower,
    ElementOneHot,
    FormalCharge,
    Hybridization,
    bond_features,
)


def test_charge_power_matches_egnn_preprocess_input():
    z = torch.tensor([1, 6, 7, 8, 9, 6])
    x = ChargePower().features(Data(z=z))
    assert x.shape == (6, 15)
    # EGNN's preprocess_input: one_hot[..., None] * (Z / 9) ** [0, 1, 2], flattened element-major.
    one_hot = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 3, 4, 1]), 5).float()
    charge = (z.float().unsqueeze(-1) / 9.0).pow(torch.arange(3.0)).view(6, 1, 3)
    expected = (one_hot.unsqueeze(-1) * charge).view(6, 15)
    assert torch.allclose(x, expected)
    assert x[1, 3:6].tolist() == pytest.approx([1.0, 6 / 9, (6 / 9) ** 2])
    assert (x[1, :3] == 0).all() and (x[1, 6:] == 0).all()


def test_featurizers_agree_on_mol_and_data():
    mol = Chem.AddHs(Chem.MolFromSmiles("OCC#N"))
    data = Data(z=torch.tensor([a.GetAtomicNum() for a in mol.GetAtoms()]))
    for f in (ElementOneHot(), ChargePower(), ChargePower(["H", "C", "N", "O"], max_power=3)):
        assert torch.equal(f.features(mol), f.features(data))


def test_as_transform_writes_x():
    data = Data(z=torch.tensor([6, 1]), pos=torch.zeros(2, 3))
    out = ChargePower()(data)
    assert out.x.shape == (2, 15) and "x" not in data
    assert ElementOneHot().num_features == 5


def test_unknown_element_is_an_error_naming_it():
    with pytest.raises(ValueError, match=r"element S \(Z=16\) of atom 1 is not in"):
        ElementOneHot().features(Data(z=torch.tensor([6, 16])))
    with pytest.raises(ValueError, match="element Cl"):
        ChargePower().features(Chem.MolFromSmiles("CCl"))


def test_chemistry_featurizers_need_a_mol():
    mol = Chem.MolFromSmiles("c1ccccc1[N+](=O)[O-]")
    assert FormalCharge().features(mol).view(-1).tolist() == [0] * 6 + [1, 0, -1]
    assert Aromatic().features(mol).view(-1).tolist() == [1] * 6 + [0, 0, 0]
    hyb = Hybridization().features(Chem.MolFromSmiles("CC#C"))
    assert hyb.argmax(-1).tolist() == [3, 1, 1]
    both = AtomFeatures(ElementOneHot(["C", "N", "O"]), FormalCharge(), Aromatic(), Hybridization())
    assert both.features(mol).shape == (9, 3 + 1 + 1 + 7) and both.needs_mol
    with pytest.raises(TypeError, match="needs an RDKit Mol"):
        FormalCharge().features(Data(z=torch.tensor([6])))


def test_bond_features():
    edge_index, edge_attr = bond_features(Chem.MolFromSmiles("C=CC#N"))
    assert edge_index.shape == (2, 6) and edge_attr.shape == (6, 4)
    assert edge_attr.argmax(-1).tolist() == [1, 1, 0, 0, 2, 2]
    assert set(map(tuple, edge_index.t().tolist())) == {(0, 1), (1, 0), (1, 2), (2, 1), (2, 3), (3, 2)}
    dative = Chem.MolFromSmiles("[NH3]->[Cu]", sanitize=False)
    with pytest.raises(ValueError, match="DATIVE"):
        bond_features(dative)


def test_bad_featurizer_arguments():
    with pytest.raises(ValueError, match="unknown element symbol 'Xx'"):
        ElementOneHot(["H", "Xx"])
    with pytest.raises(ValueError, match="duplicates"):
        ElementOneHot(["H", "C", 1])
    with pytest.raises(ValueError, match="non-empty"):
        ElementOneHot([])
    with pytest.raises(ValueError, match="max_power"):
        ChargePower(max_power=-1)
    with pytest.raises(ValueError, match="charge_scale"):
        ChargePower(charge_scale=0)
    with pytest.raises(ValueError, match="'SP4'"):
        Hybridization(["SP", "SP4"])
    with pytest.raises(ValueError, match="no 'z'"):
        ElementOneHot().features(Data(pos=torch.zeros(1, 3)))
    with pytest.raises(ValueError, match="at least one"):
        AtomFeatures()
