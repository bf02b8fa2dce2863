"""``benchmarks/oc20.py``: every energy-model spec of its ``MODELS`` runs as a periodic force
field, and a run of some models merges into the earlier results without dropping rows."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from torch_geometric.data import Batch, Data

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks import oc20  # noqa: E402
from equigraph.models import ForceField  # noqa: E402

BUDGET = dict(oc20.BUDGET)


def _slab(seed: int) -> Data:
    """One Cu(100)-like layer with an O adatom, periodic (OC20's records are periodic in all
    three directions, with vacuum along z)."""
    g = torch.Generator().manual_seed(seed)
    a = 3.61 / math.sqrt(2)
    pos = [[i * a, j * a, k * a] for k in range(1) for i in range(2) for j in range(2)]
    pos.append([0.5 * a, 0.5 * a, 1.5])
    pos = torch.tensor(pos) + 0.05 * torch.randn(len(pos), 3, generator=g)
    z = torch.tensor([29] * 4 + [8])
    cell = torch.diag(torch.tensor([2 * a, 2 * a, 20.0])).unsqueeze(0)
    fixed = torch.tensor([True] * 2 + [False] * 3)
    return Data(z=z, pos=pos, cell=cell, pbc=torch.tensor([[True, True, True]]), fixed=fixed)


@pytest.mark.parametrize("model", ["SEGNN", "TFN"])
def test_new_models_are_periodic_force_fields(model):
    torch.manual_seed(0)
    ff = ForceField(oc20.MODELS[model]).double()
    batch = Batch.from_data_list([_slab(0), _slab(1)])
    batch.pos = batch.pos.double()
    batch.cell = batch.cell.double()
    out = ff(batch)
    assert out["energy"].shape == (2,) and torch.isfinite(out["energy"]).all()
    assert out["forces"].shape == (10, 3) and torch.isfinite(out["forces"]).all()
    # Translation by a lattice vector of the periodic cell changes nothing.
    moved = batch.clone()
    moved.pos = moved.pos + moved.cell[0, 0]
    torch.testing.assert_close(ff(moved)["energy"], out["energy"])


def test_new_specs_mirror_egnns_energy_model_choices():
    egnn = oc20.MODELS["EGNN"]
    for model in ("SEGNN", "TFN"):
        spec = oc20.MODELS[model]
        for key in ("out_channels", "reduce", "atom_ref", "interaction_graph"):
            assert spec[key] == egnn[key], (model, key)
        assert spec.get("envelope", True) and not spec.get("graph_mlp", False)


def _result(task, model, mae):
    return {"task": task, "model": model, "metrics": {"energy_mae": mae}}


def _previous():
    return {"command": "python benchmarks/oc20.py", "date": "2026-01-01T00:00:00", "total_seconds": 700.0,
            "budget": BUDGET, "results": [_result(t, m, 1.0) for t in ("s2ef", "is2re") for m in ("EGNN", "SchNet")]}


def test_merge_keeps_models_not_rerun():
    new = [_result("s2ef", "TFN", 2.0), _result("is2re", "TFN", 3.0)]
    merged, runs = oc20.merge_results(new, _previous(), BUDGET)
    assert [(r["task"], r["model"]) for r in merged] == [
        ("s2ef", "EGNN"), ("s2ef", "SchNet"), ("s2ef", "TFN"),
        ("is2re", "EGNN"), ("is2re", "SchNet"), ("is2re", "TFN")]
    assert runs == [{"command": "python benchmarks/oc20.py", "date": "2026-01-01T00:00:00",
                     "models": ["EGNN", "SchNet"], "total_seconds": 700.0}]


def test_merge_replaces_only_the_rerun_pair():
    merged, _ = oc20.merge_results([_result("is2re", "SchNet", 5.0)], _previous(), BUDGET)
    got = {(r["task"], r["model"]): r["metrics"]["energy_mae"] for r in merged}
    assert got == {("s2ef", "EGNN"): 1.0, ("s2ef", "SchNet"): 1.0, ("is2re", "EGNN"): 1.0, ("is2re", "SchNet"): 5.0}


def test_merge_keeps_earlier_run_records():
    previous = {**_previous(), "runs": [{"command": "a", "models": ["EGNN"]}, {"command": "b", "models": ["SchNet"]}]}
    _, runs = oc20.merge_results([_result("s2ef", "TFN", 2.0)], previous, BUDGET)
    assert [r["command"] for r in runs] == ["a", "b"]


def test_merge_refuses_another_budget():
    with pytest.raises(ValueError, match="budget"):
        oc20.merge_results([_result("s2ef", "TFN", 2.0)], _previous(), {**BUDGET, "s2ef_epochs": 5})


def test_fresh_or_no_previous_keeps_only_this_run():
    new = [_result("is2re", "TFN", 3.0), _result("s2ef", "TFN", 2.0)]
    for merged, runs in (oc20.merge_results(new, _previous(), {**BUDGET, "s2ef_epochs": 5}, fresh=True),
                         oc20.merge_results(new, None, BUDGET)):
        assert [(r["task"], r["model"]) for r in merged] == [("s2ef", "TFN"), ("is2re", "TFN")] and runs == []


def test_another_budget_is_refused_before_any_work(tmp_path, monkeypatch):
    import json

    import equigraph.datasets.oc20_generate as generate

    (tmp_path / "oc20.json").write_text(json.dumps(_previous()))  # the full budget; --quick is another
    monkeypatch.setattr(generate, "generate_oc20_emt", lambda *a, **k: pytest.fail("data generated before the check"))
    with pytest.raises(SystemExit, match="budget"):
        oc20.main(["--quick", "--results-dir", str(tmp_path), "--out", str(tmp_path / "runs")])
