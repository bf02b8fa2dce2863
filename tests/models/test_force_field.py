"""ForceField specifics: argument and input errors, declared outputs, gradients for training
(create_graph) and not in eval, per-atom energies, Newton's third law. Physics against finite
differences, symmetries, periodicity, cutoff and batching: tests/models/test_energy_models.py."""
import pytest
import torch
from torch_geometric.data import Batch, Data

from equigraph.models import EGNN, ForceField, build_model
from equigraph.testing import assert_equivariant, default_tolerance


def _molecule(n=5, seed=0, cell=False):
    gen = torch.Generator().manual_seed(seed)
    dtype = torch.get_default_dtype()
    data = Data(z=torch.randint(1, 10, (n,), generator=gen), pos=(1.3 * torch.randn(n, 3, generator=gen)).to(dtype))
    if cell:
        data.cell = 10.0 * torch.eye(3, dtype=dtype).unsqueeze(0)
        data.pbc = torch.zeros(1, 3, dtype=torch.bool)
    return data


def _crystal(seed=0):
    gen = torch.Generator().manual_seed(seed)
    dtype = torch.get_default_dtype()
    cell = torch.tensor([[[3.0, 0.0, 0.0], [0.4, 3.1, 0.0], [0.2, 0.3, 3.3]]], dtype=dtype)
    pos = (torch.rand(4, 3, generator=gen, dtype=torch.float64) @ cell[0].double()).to(dtype)
    return Data(z=torch.tensor([29, 29, 8, 8]), pos=pos, cell=cell, pbc=torch.ones(1, 3, dtype=torch.bool))


def _egnn(**kwargs):
    torch.manual_seed(0)
    model = EGNN(hidden_channels=8, num_layers=2, out_channels=1, interaction_graph=3.0, **kwargs)
    with torch.no_grad():
        model.readout.node_net[2].weight.normal_(0.0, 1.0)
    return model


def _tol():
    atol, rtol = default_tolerance(torch.get_default_dtype())
    return dict(atol=10 * atol, rtol=10 * rtol)


class _Plain(torch.nn.Module):
    """Declares no outputs: returns the energy under a custom key, [G] not [G, 1]."""

    def forward(self, data):
        r = (data.pos[:, None] - data.pos[None]).square().sum(-1)
        return {"e": torch.exp(-r).sum().reshape(1)}


# -------------------------------------------------------------------------------------
# errors
# -------------------------------------------------------------------------------------
def test_energy_key_must_be_a_declared_graph_scalar():
    with pytest.raises(ValueError, match=r"energy_key: the model returns no 'energy'; it declares \['h', 'node_y', "):
        ForceField(_egnn(), energy_key="energy")
    with pytest.raises(ValueError, match="energy_key: 'h' must be a graph-level scalar to be an energy, got a node"):
        ForceField(_egnn(), energy_key="h")
    with pytest.raises(ValueError, match="energy_key: 'vec' must be a graph-level scalar.*vector"):
        ForceField(_egnn(), energy_key="vec")
    with pytest.raises(ValueError, match="energy_key: 'y' must be a graph-level scalar to be an energy, got a node"):
        ForceField(EGNN(hidden_channels=8, num_layers=1, out_channels=1, reduce=None))


def test_one_energy_per_graph():
    with pytest.raises(ValueError, match="out_channels=2"):
        ForceField(EGNN(hidden_channels=8, num_layers=1, out_channels=2))
    with pytest.raises(ValueError, match="out_channels=2"):
        ForceField({"name": "egnn", "hidden_channels": 8, "num_layers": 1, "out_channels": 2})


def test_stress_needs_a_cell():
    with pytest.raises(ValueError, match="data.cell is missing: stress needs a periodic cell"):
        ForceField(_egnn(), stress=True)(_molecule())


def test_input_errors():
    ff = ForceField(_egnn())
    with pytest.raises(ValueError, match="data.pos is missing"):
        ff(Data(z=torch.tensor([1, 1])))
    with pytest.raises(ValueError, match=r"model: forward must return a dict with 'y'"):
        ForceField(torch.nn.Identity())(_molecule())
    with pytest.raises(ValueError, match=r"model: forward must return a dict with 'y'"):
        ForceField(_Plain())(_molecule())  # declares nothing, returns 'e' only


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        ForceField({"name": "nope"})


# -------------------------------------------------------------------------------------
# outputs
# -------------------------------------------------------------------------------------
@pytest.mark.parametrize("forces, stress", [(True, False), (True, True), (False, True), (False, False)])
def test_outputs_declared_and_returned(forces, stress):
    ff = ForceField(_egnn(), forces=forces, stress=stress).eval()
    expected = {"energy", "node_energy"} | ({"forces"} if forces else set()) | ({"stress"} if stress else set())
    assert set(ff.outputs) == expected
    kinds = {"energy": ("scalar", "graph"), "node_energy": ("scalar", "node"), "forces": ("vector", "node"),
             "stress": ("tensor", "graph")}
    assert {k: (o.type, o.level) for k, o in ff.outputs.items()} == {k: kinds[k] for k in expected}
    batch = Batch.from_data_list([_crystal(0), _crystal(1)])
    out = ff(batch)
    assert set(out) == expected
    assert out["energy"].shape == (2,) and out["node_energy"].shape == (8,)
    if forces:
        assert out["forces"].shape == (8, 3)
    if stress:
        assert out["stress"].shape == (2, 3, 3)


def test_energy_is_the_models_output():
    model = _egnn().eval()
    data = _molecule()
    torch.testing.assert_close(ForceField(model).eval()(data)["energy"], model(data)["y"].squeeze(-1).detach())


def test_stress_without_forces_equals_stress_with_forces():
    data = _crystal()
    both = ForceField(_egnn(), stress=True).eval()(data)
    only = ForceField(_egnn(), forces=False, stress=True).eval()(data)
    assert "forces" not in only
    torch.testing.assert_close(only["stress"], both["stress"], **_tol())


def test_model_without_declared_outputs():
    ff = ForceField(_Plain(), energy_key="e").eval()
    assert set(ff.outputs) == {"energy", "forces"} and ff.cutoff is None and ff.interaction_graph is None
    data = _molecule(4)
    out = ff(data)
    assert set(out) == {"energy", "forces"} and out["energy"].shape == (1,)
    # E = sum_ij exp(-|x_i - x_j|^2): F_i = 4 sum_j exp(-r_ij^2) (x_i - x_j)
    diff = data.pos[:, None] - data.pos[None]
    expected = 4 * (torch.exp(-diff.square().sum(-1))[..., None] * diff).sum(1)
    torch.testing.assert_close(out["forces"], expected, **_tol())


def test_cutoff_graph_and_normalizer_pass_through():
    model = _egnn(atom_ref=True)
    ff = ForceField(model)
    assert ff.cutoff == 3.0 and ff.interaction_graph is model.interaction_graph
    assert ff.normalizer("energy") is model.readout and ff.normalizer("forces") is None


def test_input_is_not_modified():
    data = _crystal()
    pos, cell = data.pos.clone(), data.cell.clone()
    ForceField(_egnn(), stress=True).train()(data)
    assert torch.equal(data.pos, pos) and torch.equal(data.cell, cell)
    assert not data.pos.requires_grad and not data.cell.requires_grad


# -------------------------------------------------------------------------------------
# gradients: training on forces
# -------------------------------------------------------------------------------------
def test_training_mode_backpropagates_a_force_loss_to_the_parameters():
    ff = ForceField(_egnn(), stress=True).train()
    out = ff(_crystal())
    assert out["forces"].requires_grad and out["stress"].requires_grad
    loss = out["forces"].square().sum() + out["stress"].square().sum()
    loss.backward()
    conv = ff.model.convs[0]
    grad = conv.edge_mlp[0].weight.grad  # only reaches here through d(forces)/d(weights)
    assert grad is not None and bool(torch.isfinite(grad).all()) and float(grad.abs().max()) > 0


@pytest.mark.parametrize("dtype", [torch.float64], indirect=True, ids=["float64"])
def test_force_loss_gradient_matches_finite_differences(dtype):
    ff = ForceField(_egnn()).train()
    data = _molecule(4, 1)
    weight = ff.model.convs[1].edge_mlp[2].weight
    ff(data)["forces"].square().sum().backward()
    analytic = float(weight.grad[0, 0])
    h = 1e-6
    values = []
    for sign in (1, -1):
        with torch.no_grad():
            weight[0, 0] += sign * h
        values.append(float(ff(data)["forces"].square().sum()))
        with torch.no_grad():
            weight[0, 0] -= sign * h
    assert abs(analytic - (values[0] - values[1]) / (2 * h)) < 1e-6 * max(1.0, abs(analytic))


def test_eval_mode_does_not_build_a_graph_through_the_forces():
    ff = ForceField(_egnn(), stress=True).eval()
    out = ff(_crystal())
    assert not out["forces"].requires_grad and not out["stress"].requires_grad
    with pytest.raises(RuntimeError):
        out["forces"].square().sum().backward()


def test_forces_under_no_grad_and_inference():
    ff = ForceField(_egnn()).eval()
    data = _molecule()
    ref = ff(data)["forces"]
    with torch.no_grad():
        torch.testing.assert_close(ff(data)["forces"], ref)


# -------------------------------------------------------------------------------------
# physics that holds for every energy model
# -------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: _molecule(6), _crystal], ids=["molecule", "crystal"])
def test_node_energy_sums_to_energy(make):
    ff = ForceField(_egnn(atom_ref=True)).eval()
    with torch.no_grad():
        ff.model.readout.atom_ref.normal_(0.0, 1.0)
    batch = Batch.from_data_list([make(), make()])
    batch.pos = batch.pos + 0.1 * torch.arange(batch.num_nodes, dtype=batch.pos.dtype)[:, None].sin()
    out = ff(batch)
    sums = torch.zeros(2, dtype=out["energy"].dtype).index_add_(0, batch.batch, out["node_energy"].detach())
    torch.testing.assert_close(sums, out["energy"].detach(), **_tol())


@pytest.mark.parametrize("make", [lambda: _molecule(6), _crystal], ids=["molecule", "crystal"])
def test_newtons_third_law(make):
    ff = ForceField(_egnn(update_coords=True)).eval()
    batch = Batch.from_data_list([make(), _molecule(3, 2) if make is not _crystal else _crystal(3)])
    forces = ff(batch)["forces"]
    atol, _ = default_tolerance(torch.get_default_dtype())
    scale = float(forces.abs().max())
    assert scale > 1e-3
    for g in range(2):
        net = forces[batch.batch == g].sum(0)
        assert float(net.abs().max()) <= 10 * atol * max(1.0, scale), f"graph {g}: net force {net.tolist()}"


def test_equivariant_with_declared_outputs():
    ff = ForceField(_egnn(), stress=True).eval()
    errors = assert_equivariant(ff, _crystal())
    assert set(errors["rotation"]) == {"energy", "node_energy", "forces", "stress"}


def test_built_from_the_registry():
    ff = build_model({"name": "force_field", "model": {"name": "egnn", "hidden_channels": 8, "num_layers": 1,
                                                        "out_channels": 1}, "stress": True})
    assert isinstance(ff, ForceField) and ff.compute_stress
    assert "ForceField(EGNN(" in repr(ff) and "stress=True" in repr(ff)


def test_stress_of_a_zero_cell_is_an_error_not_nan():
    data = _molecule()
    data.cell = torch.zeros(1, 3, 3)
    data.pbc = torch.zeros(1, 3, dtype=torch.bool)
    ff = ForceField(_egnn(), stress=True).eval()
    with pytest.raises(ValueError, match="graph 0 has a cell of zero volume"):
        ff(data)


def test_node_energy_is_declared_for_models_without_declarations():
    class Pair(torch.nn.Module):
        def forward(self, data):
            node = torch.exp(-(data.pos[:, None] - data.pos[None]).norm(dim=-1)).sum(1, keepdim=True)
            return {"y": node.sum(0, keepdim=True), "node_y": node}

    ff = ForceField(Pair())
    assert set(ff(_molecule(3))) == set(ff.outputs)


def test_direct_force_head():
    # The option for speed: forces from an equivariant vector output, no backward pass.
    from equigraph.testing import assert_equivariant

    torch.manual_seed(0)
    spec = {"name": "egnn", "hidden_channels": 8, "num_layers": 2, "out_channels": 1, "update_coords": True,
            "coords_agg": "sum", "interaction_graph": 3.0}
    ff = ForceField(spec, direct_forces="vec").double().eval()
    for p in ff.model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    data = _molecule()
    data.pos = data.pos.double()
    out = ff(data)
    assert out["forces"].shape == data.pos.shape and float(out["forces"].abs().max()) > 0
    torch.testing.assert_close(out["forces"], ff.model(data)["vec"][:, 0])
    assert_equivariant(ff, data, "E3")
    with pytest.raises(ValueError, match="direct_forces: 'h' must be a node-level vector output"):
        ForceField(spec, direct_forces="h")
    with pytest.raises(ValueError, match="set forces=True"):
        ForceField(spec, forces=False, direct_forces="vec")
