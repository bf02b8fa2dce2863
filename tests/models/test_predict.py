"""Saved models on the user's path: save / load and predict name the problem and the molecule."""
import pytest
import torch
from torch_geometric.data import Data

from equigraph.models import build_model, load, save
from equigraph.models.predict import predict


@pytest.fixture
def model(tmp_path):
    torch.manual_seed(0)
    model = build_model({"name": "egnn", "hidden_channels": 8, "num_layers": 1, "out_channels": 1})
    path = save(model, tmp_path / "model.pt", metadata={"elements": [1, 6, 8], "featurizer": None})
    return load(path)


def _mol(z, pos, name=None):
    data = Data(z=torch.tensor(z), pos=torch.tensor(pos, dtype=torch.get_default_dtype()))
    if name:
        data.name = name
    return data


def test_round_trip_keeps_weights_buffers_and_metadata(tmp_path):
    torch.manual_seed(1)
    model = build_model({"name": "egnn", "hidden_channels": 8, "num_layers": 1, "out_channels": 1, "atom_ref": True})
    model.readout.set_statistics(scale=2.0, shift=3.0, atom_ref=torch.arange(100.0).unsqueeze(-1))
    again = load(save(model, tmp_path / "m.pt", metadata={"units": {"y": "eV"}}))
    for key, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key
    assert again.metadata == {"units": {"y": "eV"}} and not again.training
    mol = _mol([8, 1], [[0, 0, 0], [0.96, 0, 0]])
    torch.testing.assert_close(again(mol)["y"], model(mol)["y"])


def test_save_never_overwrites_and_needs_a_spec(tmp_path):
    model = build_model("egnn", hidden_channels=8, num_layers=1)
    save(model, tmp_path / "m.pt")
    with pytest.raises(ValueError, match="exists already"):
        save(model, tmp_path / "m.pt")
    from equigraph.models import EGNN

    with pytest.raises(ValueError, match="was not built from a registry spec"):
        save(EGNN(hidden_channels=8, num_layers=1), tmp_path / "other.pt")


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_text("hello")
    with pytest.raises(ValueError, match="junk.pt' is not an equigraph model file"):
        load(tmp_path / "junk.pt")
    torch.save({"pytorch-lightning_version": "2.5", "state_dict": {}}, tmp_path / "l.ckpt")
    with pytest.raises(ValueError, match="is a Lightning checkpoint"):
        load(tmp_path / "l.ckpt")


def test_elements_the_model_never_saw_are_refused(model):
    mols = [_mol([8, 1], [[0, 0, 0], [0.96, 0, 0]]), _mol([17, 6], [[0, 0, 0], [1.8, 0, 0]], name="CCl")]
    with pytest.raises(ValueError, match=r"molecule 1 \(CCl\): element Cl \(Z=17\) was not in this model's training "
                                         r"data \(it was trained on H C O\)"):
        predict(model, mols)


def test_coincident_atoms_name_the_molecule(model):
    # Issue: the coincident-atom error named atoms by their batch-wide index only.
    good = _mol([8, 1], [[0, 0, 0], [0.96, 0, 0]])
    bad = _mol([6, 1, 1], [[0, 0, 0], [1.0, 0, 0], [1.0, 0, 0]], name="stacked")
    with pytest.raises(ValueError, match=r"molecule 1 \(stacked\): .*atoms 1 and 2"):
        predict(model, [good, bad])


def test_float64_input_to_a_float32_model(model):
    # Issue: a float64 batch into a float32 model gave a raw `mat1 and mat2` error.
    model = model.float()
    mol = _mol([8, 1], [[0, 0, 0], [0.96, 0, 0]])
    mol.pos = mol.pos.double()
    with pytest.raises(ValueError, match="data.pos is torch.float64 but the model is torch.float32"):
        model(mol)
    assert predict(model, [mol])["y"].dtype == torch.float32  # predict converts to the model's dtype


def test_non_finite_positions_name_the_molecule(model):
    mol = _mol([8, 1], [[0, 0, 0], [float("nan"), 0, 0]], name="broken")
    with pytest.raises(ValueError, match=r"molecule 0 \(broken\): positions contain NaN"):
        predict(model, [mol])
