"""Every example runs in its quick mode (``--quick``), so that none of them rots: each is a
subprocess, as a user would run it, writing its runs into a temporary folder."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str, timeout: float = 300) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{name} {' '.join(args)} failed ({proc.returncode}):\n{output[-4000:]}"
    return output


def test_every_example_has_a_quick_mode_and_a_test():
    tested = {"demo.py", "frame_averaging_pyg.py", "nbody.py", "oc20_relax_md.py", "custom_layer.py"}
    examples = {p.name for p in EXAMPLES.glob("*.py")}
    assert examples == tested, f"examples without a quick-mode test here: {sorted(examples - tested)}"
    for name in examples:
        assert "--quick" in (EXAMPLES / name).read_text(), f"{name} has no --quick mode"


def test_example_docstrings():
    """The ``>>>`` examples of the examples' own docstrings (``make test`` runs doctests of
    ``equigraph`` only)."""
    files = sorted(str(p) for p in EXAMPLES.glob("*.py"))
    proc = subprocess.run([sys.executable, "-m", "doctest", *files], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


def test_frame_averaging_pyg():
    out = run_example("frame_averaging_pyg.py", "--quick")
    assert "frame-averaged: passes" in out and "bare network: fails, as expected" in out


@pytest.mark.parametrize("model", ["egnn", "segnn"])
def test_nbody(tmp_path, model):
    out = run_example("nbody.py", "--quick", "--model", model, "--out", str(tmp_path))
    assert f"{model.upper()} on N-body" in out and "passes assert_equivariant" in out
    assert (tmp_path / "version_0" / "model.pt").is_file()


def test_custom_layer(tmp_path):
    out = run_example("custom_layer.py", "--quick", "--out", str(tmp_path))
    assert "VectorConv: equivariant" in out and "fails the translation check" in out
    assert "12 passed" in out or " passed" in out
    assert "TinyPotential on EMT" in out
    assert (tmp_path / "version_0" / "model.pt").is_file()


@pytest.mark.slow
def test_demo(tmp_path):
    pytest.importorskip("rdkit")
    out = run_example("demo.py", "--quick", f"out_dir={tmp_path}")
    assert "test MAE of the HOMO-LUMO gap" in out and "aspirin" in out
    assert (tmp_path / "version_0" / "learning_curve.png").is_file()


@pytest.mark.slow
def test_oc20_relax_md(tmp_path):
    out = run_example("oc20_relax_md.py", "--quick", "--out", str(tmp_path))
    assert "relaxation of" in out and "Langevin MD" in out
