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
    result = json.loads((tmp / "run" / "result.json").read_text())
    return tmp, result


def test_train_applies_overrides_and_writes_outputs(trained, capsys):
    tmp, result = trained
    assert result["epochs"] == 2 and result["unit"] == "meV"
    assert Path(result["checkpoint"]).is_file() and Path(result["plot"]).is_file()


def test_predict_smiles_matches_the_module(trained, capsys):
    from equigraph.data import from_smiles
    from equigraph.train import load_checkpoint, predict_molecules

    _, result = trained
    capsys.readouterr()
    assert main(["predict", result["checkpoint"], "--smiles", "CCO", "c1ccccc1"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and out[0].startswith("CCO") and out[0].endswith("meV")
    module = load_checkpoint(result["checkpoint"])
    expected = predict_molecules(module, [from_smiles("CCO", seed=0)])[0, 0].item() * 1000.0
    printed = float(out[0].split("=")[1].split()[0])
    assert printed == pytest.approx(expected, rel=1e-3)


def test_predict_sdf(trained, tmp_path, capsys):
    from rdkit import Chem
    from rdkit.Chem import AllChem

    _, result = trained
    mol = Chem.AddHs(Chem.MolFromSmiles("CO"))
    AllChem.EmbedMolecule(mol, randomSeed=0)
    mol.SetProp("_Name", "methanol")
    with Chem.SDWriter(str(tmp_path / "m.sdf")) as w:
        w.write(mol)
    capsys.readouterr()
    assert main(["predict", result["checkpoint"], "--file", str(tmp_path / "m.sdf")]) == 0
    assert capsys.readouterr().out.startswith("methanol")


def test_predict_in_a_fresh_process_gives_the_same_values(trained, capsys):
    """Checkpoint round trip across processes: weights, normalisation and featuriser."""
    _, result = trained
    capsys.readouterr()
    assert main(["predict", result["checkpoint"], "--smiles", "CCO", "c1ccccc1"]) == 0
    here = capsys.readouterr().out
    proc = subprocess.run([sys.executable, "-m", "equigraph", "predict", result["checkpoint"], "--smiles", "CCO",
                           "c1ccccc1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == here


def test_invalid_smiles_is_one_quoted_line(trained, capsys):
    _, result = trained
    capsys.readouterr()
    assert main(["predict", result["checkpoint"], "--smiles", "CCO", "C1CC("]) == 1
    captured = capsys.readouterr()
    assert "'C1CC('" in captured.err and "Traceback" not in captured.err
    assert captured.err.count("\n") == 1 and captured.out == ""


def test_element_outside_training_is_an_error(trained, capsys):
    _, result = trained
    assert main(["predict", result["checkpoint"], "--smiles", "CCl"]) == 1
    assert "Cl" in capsys.readouterr().err


def test_evaluate_checkpoint(trained, capsys):
    _, result = trained
    capsys.readouterr()
    assert main(["evaluate", result["checkpoint"]]) == 0
    out = capsys.readouterr().out
    assert out.startswith("test MAE (synthetic, 16 molecules):") and "meV" in out
    shown = float(out.split(":")[1].split()[0])
    assert shown == pytest.approx(result["test_mae"], rel=1e-3)


def test_missing_checkpoint(capsys, tmp_path):
    assert main(["evaluate", str(tmp_path / "none.ckpt")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_bad_override_is_one_line(capsys):
    assert main(["train", str(ROOT / "configs" / "qm9_egnn_demo.yaml"), "train.max_epochs"]) == 1
    err = capsys.readouterr().err
    assert "KEY=VALUE" in err and "Traceback" not in err


def test_info_lists_versions_and_backends(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for name in ("equigraph", "torch", "torch_geometric", "e3nn", "ase", "rdkit", "lightning", "vesin",
                 "torch_scatter", "torch_cluster", "pyg_lib", "cuda"):
        assert name in out
    assert torch.__version__ in out


def test_predict_missing_sdf(trained, capsys, tmp_path):
    _, result = trained
    assert main(["predict", result["checkpoint"], "--file", str(tmp_path / "none.sdf")]) == 1
    assert "does not exist" in capsys.readouterr().err
