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


# --- several fragments (salts, solvates) --------------------------------------------------

def _heavy_kabsch_rmsd(a, b):
    a = a - a.mean(0)
    b = b - b.mean(0)
    u, _, vt = torch.linalg.svd(a.T @ b)
    d = torch.sign(torch.linalg.det(u @ vt))
    rot = u @ torch.diag(torch.tensor([1.0, 1.0, d], dtype=a.dtype)) @ vt
    return ((a @ rot - b) ** 2).sum(1).mean().sqrt().item()


def _fragments(smiles):
    return Chem.GetMolFrags(Chem.AddHs(Chem.MolFromSmiles(smiles)))


GAP = 4.0  # the documented default gap between fragments, Å


@pytest.mark.parametrize("smiles", ["[Na+].[Cl-]", "CC(=O)[O-].[NH4+]", "O.O.CCO", "c1ccccc1.[K+].[Br-]"])
def test_fragments_are_laid_out_apart(smiles):
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    frags = Chem.GetMolFrags(mol)
    for d in from_smiles(smiles, num_conformers=2, dtype=torch.float64):
        dist = torch.cdist(d.pos, d.pos)
        for a in range(len(frags)):
            for b in range(a + 1, len(frags)):
                assert dist[list(frags[a])][:, list(frags[b])].min() >= GAP - 1e-9
            own = list(frags[a])
            inside = dist[own][:, own] + torch.eye(len(own), dtype=torch.float64) * 9
            assert inside.min() > 0.9  # no collapsed atoms inside a fragment
        for bond in mol.GetBonds():
            assert 0.9 < dist[bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()] < 1.6


def test_fragment_geometry_matches_the_lone_molecule_and_gap_is_a_parameter():
    # Ethanol embedded next to two waters has the bond lengths of ethanol embedded alone
    # (relaxed on its own, not squeezed by the waters).
    alone = from_smiles("CCO", dtype=torch.float64)
    solvated = from_smiles("O.O.CCO", dtype=torch.float64)
    idx = list(_fragments("O.O.CCO")[2])
    assert solvated.z[idx].tolist() == alone.z.tolist()
    ethanol = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    for bond in ethanol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        assert torch.dist(solvated.pos[idx[i]], solvated.pos[idx[j]]).item() == pytest.approx(
            torch.dist(alone.pos[i], alone.pos[j]).item(), abs=0.01)
    from equigraph.data.rdkit_io import FRAGMENT_GAP

    assert FRAGMENT_GAP == GAP
    d = from_smiles("[Na+].[Cl-]", fragment_gap=6.5, dtype=torch.float64)
    assert torch.dist(d.pos[0], d.pos[1]).item() == pytest.approx(6.5)
    with pytest.raises(ValueError, match="fragment_gap"):
        from_smiles("[Na+].[Cl-]", fragment_gap=-1.0)


# --- several conformers --------------------------------------------------------------------

def test_conformers_differ_with_the_default_seed():
    confs = from_smiles("CCCCO", num_conformers=4, dtype=torch.float64)
    again = from_smiles("CCCCO", num_conformers=4, dtype=torch.float64)
    assert all(torch.equal(a.pos, b.pos) for a, b in zip(confs, again))
    heavy = confs[0].z > 1
    for i in range(len(confs)):
        for j in range(i + 1, len(confs)):
            assert _heavy_kabsch_rmsd(confs[i].pos[heavy], confs[j].pos[heavy]) > 0.01, (i, j)


def test_conformers_relaxing_to_one_minimum_are_redrawn():
    # With seed 7, two of the first four embeddings of CCCCO relax to the same minimum.
    confs = from_smiles("CCCCO", num_conformers=4, seed=7, dtype=torch.float64)
    heavy = confs[0].z > 1
    assert min(_heavy_kabsch_rmsd(a.pos[heavy], b.pos[heavy])
               for k, a in enumerate(confs) for b in confs[k + 1:]) > 0.01
    # A rigid molecule has one minimum: its conformers are kept, not an error.
    water = from_smiles("O", num_conformers=3, dtype=torch.float64)
    assert len(water) == 3 and _heavy_kabsch_rmsd(water[0].pos, water[1].pos) < 0.01


# --- 2D and hydrogen-less SDF records --------------------------------------------------------

def _embedded(smiles, seed=1):
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(mol, randomSeed=seed)
    return mol


def _write_sdf(path, mols, names=None):
    writer = Chem.SDWriter(str(path))
    for i, mol in enumerate(mols):
        if names is not None and names[i] is not None:
            mol.SetProp("_Name", names[i])
        writer.write(mol)
    writer.close()
    return path


def _flattened(mol):
    # A 3D molecule with every z set to 0, as a 2D depiction tool would write it.
    mol = Chem.Mol(mol)
    conf = mol.GetConformer()
    for i in range(mol.GetNumAtoms()):
        p = conf.GetAtomPosition(i)
        conf.SetAtomPosition(i, (p.x, p.y, 0.0))
    return mol


def _depiction(smiles):
    mol = Chem.MolFromSmiles(smiles)
    AllChem.Compute2DCoords(mol)
    return mol


def test_read_sdf_refuses_2d_depictions(tmp_path):
    records = [_embedded("CCO"), _flattened(_embedded("CCN"))]
    path = _write_sdf(tmp_path / "flat.sdf", records, ["ok", "amine"])
    with pytest.raises(ValueError, match=r"flat.sdf: record 1 \('amine'\): .*2D depiction.*embed=True"):
        read_sdf(path)
    # A depiction with explicit hydrogens and a 2D header, without a name; even a molecule
    # that could be planar (formaldehyde).
    for smiles in ("CO", "C=O"):
        path = _write_sdf(tmp_path / "depict.sdf", [Chem.AddHs(_depiction(smiles), addCoords=True)])
        with pytest.raises(ValueError, match=r"depict.sdf: record 0: .*2D depiction"):
            read_sdf(path)


def test_read_sdf_keeps_planar_3d_molecules_in_the_xy_plane(tmp_path):
    # RDKit embeds water and formaldehyde with z = 0 and writes a 3D header: a 3D geometry.
    mols = [_embedded("O"), _flattened(_embedded("C=O"))]
    assert all(not m.GetConformer().GetPositions()[:, 2].any() for m in mols)
    graphs = read_sdf(_write_sdf(tmp_path / "planar.sdf", mols))
    assert [g.num_nodes for g in graphs] == [3, 4]


def test_read_sdf_refuses_missing_hydrogens(tmp_path):
    heavy = Chem.RemoveHs(_embedded("CC(=O)O"))
    path = _write_sdf(tmp_path / "noh.sdf", [_embedded("C"), heavy], [None, "acid"])
    with pytest.raises(ValueError, match=r"noh.sdf: record 1 \('acid'\): no explicit hydrogens.*embed=True"):
        read_sdf(path)
    # Molecules that need no hydrogens are read as they are.
    ions = Chem.MolFromSmiles("[Na+].[Cl-]")
    ions.AddConformer(Chem.Conformer(2))
    ions.GetConformer().SetAtomPosition(1, (2.8, 0.1, 0.3))
    ions.GetConformer().Set3D(True)
    assert read_sdf(_write_sdf(tmp_path / "ions.sdf", [ions]))[0].z.tolist() == [11, 17]


def test_read_sdf_embed_adds_hydrogens_and_3d_coordinates(tmp_path):
    good = _embedded("CCO")
    records = [good, _depiction("CC(=O)O"), Chem.RemoveHs(_embedded("CCCN")), _depiction("[Na+].[Cl-]")]
    path = _write_sdf(tmp_path / "mixed.sdf", records)
    graphs = read_sdf(path, embed=True, dtype=torch.float64)
    as_given = torch.tensor(good.GetConformer().GetPositions())
    assert torch.allclose(graphs[0].pos, as_given, atol=1e-4)
    assert graphs[1].z.tolist() == [6, 6, 8, 8, 1, 1, 1, 1]
    assert graphs[2].z.tolist() == [6, 6, 6, 7] + [1] * 9
    for g in graphs[1:3]:
        assert g.pos[:, 2].abs().max() > 0.1
        dist = torch.cdist(g.pos, g.pos) + torch.eye(g.num_nodes, dtype=torch.float64) * 9
        assert dist.min() > 0.9
    acid = graphs[1].pos
    assert 1.19 < torch.dist(acid[1], acid[2]) < 1.24  # C=O from the force field, not the depiction
    assert torch.dist(graphs[3].pos[0], graphs[3].pos[1]) >= 4.0  # fragments laid out apart
    again = read_sdf(path, embed=True, dtype=torch.float64)
    assert all(torch.equal(a.pos, b.pos) for a, b in zip(graphs, again))
    assert read_sdf(path, embed=True, remove_hs=True)[2].z.tolist() == [6, 6, 6, 7]


@pytest.mark.parametrize("smiles", ["C[C@@H](N)O", "C[C@H](N)O", "C/C=C\\C"])
def test_read_sdf_embed_keeps_the_drawn_stereo(tmp_path, smiles):
    graph = read_sdf(_write_sdf(tmp_path / "s.sdf", [_depiction(smiles)]), embed=True, dtype=torch.float64)[0]
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    conf = Chem.Conformer(mol.GetNumAtoms())
    for i, p in enumerate(graph.pos.tolist()):
        conf.SetAtomPosition(i, p)
    mol.AddConformer(conf)
    Chem.AssignStereochemistryFrom3D(mol)
    assert Chem.MolToSmiles(Chem.RemoveHs(mol)) == Chem.MolToSmiles(Chem.MolFromSmiles(smiles))


def test_read_sdf_empty_file_and_properties_per_record(tmp_path):
    from torch_geometric.data import Batch

    empty = tmp_path / "empty.sdf"
    empty.write_text("")
    with pytest.raises(ValueError, match=r"empty.sdf: .*no records"):
        read_sdf(empty)
    mols = [_embedded(s) for s in ("CCO", "CC", "C")]
    mols[0].SetProp("energy", "-1.5"), mols[0].SetProp("homo", "-0.3"), mols[0].SetProp("tag", "a")
    mols[1].SetProp("energy", "-2.5"), mols[1].SetProp("tag", "b")
    mols[2].SetProp("energy", "n/a"), mols[2].SetProp("tag", "7")
    path = _write_sdf(tmp_path / "props.sdf", mols, ["ethanol", None, "methane"])
    with pytest.warns(UserWarning, match=r"props.sdf: .*'homo'.*record 1"):
        graphs = read_sdf(path)
    assert [g.name for g in graphs] == ["ethanol", f"{path}[1]", "methane"]
    assert "homo" not in graphs[0]
    assert [g.energy for g in graphs] == ["-1.5", "-2.5", "n/a"]  # text in one record: text in all
    assert [g.tag for g in graphs] == ["a", "b", "7"]
    batch = Batch.from_data_list(graphs)
    assert batch.num_graphs == 3 and batch.name == ["ethanol", f"{path}[1]", "methane"]
