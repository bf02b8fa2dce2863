import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem

from equigraph.data import keys
from equigraph.data.featurizers import ChargePower, ElementOneHot
from equigraph.data.rdkit_io import from_rdkit, from_smiles, from_smiles_list, read_sdf


def test_smiles_to_conformer_geometry():
    d = from_smiles("CC(=O)O", seed=0, dtype=torch.float64)
    assert d.z.tolist() == [6, 6, 8, 8, 1, 1, 1, 1]  # hydrogens added
    assert d.pos.dtype == torch.float64 and d.smiles == "CC(=O)O"
    dist = torch.cdist(d.pos, d.pos)
    assert 1.48 < dist[0, 1] < 1.54  # C-C
    assert 1.19 < dist[1, 2] < 1.24  # C=O
    assert 1.33 < dist[1, 3] < 1.39  # C-OH
    assert all(1.07 < dist[0, h] < 1.11 for h in (4, 5, 6))  # C-H
    off = dist + torch.eye(8) * 10
    assert off.min() > 0.9


def test_reproducible_with_seed_and_several_conformers():
    a = from_smiles("CCCCO", num_conformers=3, seed=7)
    b = from_smiles("CCCCO", num_conformers=3, seed=7)
    assert isinstance(a, list) and len(a) == 3
    assert all(torch.equal(x.pos, y.pos) for x, y in zip(a, b))
    c = from_smiles("CCCCO", num_conformers=3, seed=8)
    assert not torch.allclose(a[0].pos, c[0].pos)
    assert torch.equal(from_smiles("CCCCO", seed=7).pos, a[0].pos)


def test_features_and_bonds():
    d = from_smiles("C=O", featurizer=ChargePower(), bonds=True)
    assert d.x.shape == (4, 15)
    assert d[keys.EDGE_INDEX].shape == (2, 6) and d[keys.EDGE_ATTR].shape == (6, 4)
    with pytest.raises(ValueError, match="element S"):
        from_smiles("CS", featurizer=ElementOneHot())


def test_uff_fallback_when_mmff_lacks_parameters(monkeypatch):
    calls = []
    monkeypatch.setattr(AllChem, "MMFFHasAllMoleculeParams", lambda mol: False)
    real = AllChem.UFFOptimizeMoleculeConfs
    monkeypatch.setattr(AllChem, "UFFOptimizeMoleculeConfs", lambda *a, **k: calls.append(1) or real(*a, **k))
    d = from_smiles("CCO")
    assert calls and d.num_nodes == 9


def test_invalid_smiles_quoted():
    with pytest.raises(ValueError, match=r"cannot parse 'C1CC\(C'"):
        from_smiles("C1CC(C")
    with pytest.raises(ValueError, match="has no atoms"):
        from_smiles("")
    with pytest.raises(TypeError, match="smiles"):
        from_smiles(None)
    with pytest.raises(ValueError, match="num_conformers"):
        from_smiles("C", num_conformers=0)
    with pytest.raises(ValueError, match=r"smiles\[1\]: smiles: RDKit cannot parse 'XYZ'"):
        from_smiles_list(["C", "XYZ"])


def test_embedding_retries_with_random_coordinates_then_reports(monkeypatch):
    real = AllChem.EmbedMultipleConfs
    seen = []

    def flaky(mol, numConfs, params):
        seen.append(params.useRandomCoords)
        return [] if not params.useRandomCoords else real(mol, numConfs=numConfs, params=params)

    monkeypatch.setattr(AllChem, "EmbedMultipleConfs", flaky)
    assert from_smiles("CCO").num_nodes == 9
    assert seen == [False, True]

    def fails_on_nitrogen(mol, numConfs, params):
        if any(a.GetSymbol() == "N" for a in mol.GetAtoms()):
            return []
        return real(mol, numConfs=numConfs, params=params)

    monkeypatch.setattr(AllChem, "EmbedMultipleConfs", fails_on_nitrogen)
    with pytest.raises(ValueError, match=r"smiles\[2\]: smiles 'CCN': embedded 0 of 1 conformers"):
        from_smiles_list(["C", "O", "CCN"])


def test_from_rdkit_uses_own_conformer():
    mol = Chem.AddHs(Chem.MolFromSmiles("CO"))
    AllChem.EmbedMolecule(mol, randomSeed=3)
    d = from_rdkit(mol, dtype=torch.float64)
    assert torch.allclose(d.pos, torch.tensor(mol.GetConformer().GetPositions()))
    bare = Chem.MolFromSmiles("CO")
    assert from_rdkit(bare).num_nodes == 2  # embedded as given, no hydrogens added
    with pytest.raises(ValueError, match="no conformer 5"):
        from_rdkit(mol, conf_id=5)
    with pytest.raises(TypeError, match="mol"):
        from_rdkit("CO")


def test_read_sdf_and_bad_record(tmp_path):
    path = tmp_path / "mols.sdf"
    writer = Chem.SDWriter(str(path))
    for i, smi in enumerate(["CCO", "c1ccccc1"]):
        mol = Chem.AddHs(Chem.MolFromSmiles(smi))
        AllChem.EmbedMolecule(mol, randomSeed=1)
        mol.SetProp("_Name", f"mol{i}")
        mol.SetProp("energy", str(-1.5 * (i + 1)))
        writer.write(mol)
    writer.close()
    graphs = read_sdf(path)
    assert [g.num_nodes for g in graphs] == [9, 12]
    assert graphs[1].name == "mol1" and graphs[1].energy.tolist() == [-3.0]
    text = path.read_text().split("$$$$\n")
    broken = text[1].replace("V2000", "V2000").splitlines()
    broken[3] = "  9 12  0  0  0  0  0  0  0  0999 V2000"  # claims 9 atoms, 12 bonds: bond block now bad
    bad = tmp_path / "bad.sdf"
    bad.write_text(text[0] + "$$$$\n" + "\n".join(broken) + "\n$$$$\n")
    with pytest.raises(ValueError, match=r"bad.sdf: record 1 \(0-based\)"):
        read_sdf(bad)
    assert len(read_sdf(bad, skip_invalid=True)) == 1
    with pytest.raises(FileNotFoundError):
        read_sdf(tmp_path / "none.sdf")


def test_rdkit_is_imported_lazily():
    # rdkit is an optional extra: no module of equigraph.data may import it at module level.
    import ast
    from pathlib import Path

    import equigraph.data

    for path in Path(equigraph.data.__file__).parent.glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.split(".")[0] == "rdkit" for n in names), path.name
