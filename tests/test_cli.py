import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "train"))
from train_helpers import egnn_config  # noqa: E402

from equigraph.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``equigraph train`` on a YAML file with overrides: a tiny EGNN on synthetic molecules."""
    tmp = tmp_path_factory.mktemp("cli")
    cfg = egnn_config(tmp, max_epochs=1)
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code = main(["train", str(path), "train.max_epochs=2", "train.metric_unit=meV", f"out_dir={tmp / 'run'}"])
    assert code == 0
    result = json.loads((tmp / "run" / "version_0" / "result.json").read_text())
    return tmp, result


def test_train_applies_overrides_and_writes_outputs(trained, capsys):
    tmp, result = trained
    assert result["epochs"] == 2 and result["unit"] == "meV"
    assert Path(result["checkpoint"]).is_file() and Path(result["plot"]).is_file()
    assert Path(result["model_file"]).is_file()


def test_predict_smiles_matches_the_model(trained, capsys):
    from equigraph.data import from_smiles
    from equigraph.models import load
    from equigraph.models.predict import predict

    _, result = trained
    capsys.readouterr()
    assert main(["predict", result["out_dir"], "--smiles", "CCO", "c1ccccc1"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and out[0].startswith("CCO") and out[0].endswith("meV")
    expected = predict(load(result["model_file"]), [from_smiles("CCO", seed=0)])["y"][0, 0].item() * 1000.0
    printed = float(out[0].split("=")[1].split()[0])
    assert printed == pytest.approx(expected, rel=1e-3)


def test_predict_sdf_and_xyz(trained, tmp_path, capsys):
    from ase.io import write
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from equigraph.data import to_ase

    _, result = trained
    mol = Chem.AddHs(Chem.MolFromSmiles("CO"))
    AllChem.EmbedMolecule(mol, randomSeed=0)
    mol.SetProp("_Name", "methanol")
    with Chem.SDWriter(str(tmp_path / "m.sdf")) as w:
        w.write(mol)
    capsys.readouterr()
    assert main(["predict", result["model_file"], "--file", str(tmp_path / "m.sdf")]) == 0
    sdf_line = capsys.readouterr().out
    assert sdf_line.startswith("methanol")
    # Issue: `predict --file x.xyz` failed (only SDF was read); the geometry is used as given.
    from equigraph.data import read_molecules

    write(tmp_path / "m.xyz", to_ase(read_molecules(tmp_path / "m.sdf")[0]))
    assert main(["predict", result["model_file"], "--file", str(tmp_path / "m.xyz")]) == 0
    xyz_line = capsys.readouterr().out
    assert sdf_line.split("=")[1] == xyz_line.split("=")[1]


def test_predict_in_a_fresh_process_gives_the_same_values(trained, capsys):
    """Model file round trip across processes: weights, output statistics and featuriser."""
    _, result = trained
    capsys.readouterr()
    assert main(["predict", result["out_dir"], "--smiles", "CCO", "c1ccccc1"]) == 0
    here = capsys.readouterr().out
    proc = subprocess.run([sys.executable, "-m", "equigraph", "predict", result["out_dir"], "--smiles", "CCO",
                           "c1ccccc1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == here


def _one_line_error(capsys, *words):
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.err.count("\n") == 1, captured.err
    for word in words:
        assert word in captured.err, captured.err
    return captured.err


def test_invalid_smiles_is_one_quoted_line(trained, capsys):
    _, result = trained
    capsys.readouterr()
    assert main(["predict", result["out_dir"], "--smiles", "CCO", "C1CC("]) == 1
    _one_line_error(capsys, "'C1CC('")


def test_element_outside_training_is_an_error(trained, capsys):
    # Issue: a model trained on H/C/N/O predicted Cl, Si, Se, Pt without a word.
    _, result = trained
    capsys.readouterr()
    assert main(["predict", result["out_dir"], "--smiles", "CCO", "C[Si](C)(C)C"]) == 1
    _one_line_error(capsys, "molecule 1 (C[Si](C)(C)C)", "Si (Z=14)", "trained on H C N O")


def test_salt_fragments_are_placed_apart(trained, capsys):
    _, result = trained
    capsys.readouterr()
    assert main(["predict", result["out_dir"], "--smiles", "CC(=O)[O-].[NH4+]"]) == 0


def test_evaluate_run(trained, capsys):
    _, result = trained
    capsys.readouterr()
    assert main(["evaluate", result["out_dir"]]) == 0
    out = capsys.readouterr().out
    assert out.startswith("test MAE of synthetic (16 graphs):") and "meV" in out and "mean predictor" in out
    shown = float(out.split(":")[1].split()[0])
    assert shown == pytest.approx(result["test_mae"], rel=1e-3)


def test_evaluate_refuses_contradicting_overrides(trained, capsys):
    _, result = trained
    capsys.readouterr()
    assert main(["evaluate", result["out_dir"], "data.target=homo"]) == 1
    _one_line_error(capsys, "'data.target' cannot be overridden")


def test_missing_model(capsys, tmp_path):
    assert main(["evaluate", str(tmp_path / "none")]) == 1
    _one_line_error(capsys, "does not exist")


def test_not_a_model_file(capsys, tmp_path):
    # Issue: a file that is not a checkpoint gave an UnpicklingError traceback.
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model at all")
    assert main(["predict", str(junk), "--smiles", "C"]) == 1
    _one_line_error(capsys, "is not an equigraph model file")


def test_bad_override_is_one_line(capsys):
    assert main(["train", str(ROOT / "configs" / "qm9_egnn_demo.yaml"), "train.max_epochs"]) == 1
    _one_line_error(capsys, "KEY=VALUE")


@pytest.mark.parametrize("override, words", [
    ("model.hidden_channels='64'", ("hidden_channels must be int", "'64'")),
    ("model.hidden_channels=0", ("hidden_channels must be a positive int",)),
    ("train.accelerator=gpu", ("no CUDA GPU",)),
    ("data.targets=gap", ("unknown argument 'targets'",)),
])
def test_config_errors_are_one_line_and_write_nothing(override, words, tmp_path, capsys):
    if override.endswith("gpu") and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    out = tmp_path / "out"
    assert main(["train", str(ROOT / "configs" / "qm9_egnn_demo.yaml"), override, f"out_dir={out}"]) == 1
    _one_line_error(capsys, *words)
    assert not out.exists()


def test_version(capsys):
    from equigraph import __version__

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"equigraph {__version__}"


def test_info_lists_versions_and_backends(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for name in ("equigraph", "torch", "torch_geometric", "e3nn", "ase", "rdkit", "lightning", "vesin",
                 "torch_scatter", "torch_cluster", "pyg_lib", "cuda"):
        assert name in out
    assert torch.__version__ in out


def test_predict_missing_file(trained, capsys, tmp_path):
    _, result = trained
    assert main(["predict", result["out_dir"], "--file", str(tmp_path / "none.sdf")]) == 1
    _one_line_error(capsys, "none.sdf")
