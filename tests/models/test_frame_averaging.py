"""Frame averaging and group averaging: exact equivariance of wrapped non-equivariant
backbones (and failure of the unwrapped ones), batching, stochastic frames, degenerate
spectra, finite groups, declarations and errors."""
import warnings

import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.utils import scatter

from equigraph.graph import full_graph
from equigraph.models import available_models, build_model
from equigraph.models.contract import Output
from equigraph.models.frame_averaging import FrameAveraging, GroupAveraging
from equigraph.nn.backbones import DGCNN, GNN, PointNet
from equigraph.nn.frames import DegenerateFrameWarning, average_outputs, canonicalize, pca_frames
from equigraph.registry import spec_of
from equigraph.symmetry import random_rotation, transform
from equigraph.testing import assert_batch_consistent, assert_equivariant


def anisotropic_cloud(n: int, seed: int, variances=(9.0, 4.0, 1.0)) -> torch.Tensor:
    """``n`` points whose covariance eigenvalues are exactly proportional to ``variances``
    (far from degenerate), randomly rotated and shifted, in the default dtype."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    x = x - x.mean(dim=0)
    lam, V = torch.linalg.eigh(x.T @ x)
    x = (x @ V) / lam.sqrt() * torch.tensor(variances, dtype=torch.float64).sqrt()
    x = x @ random_rotation(generator=seed).T + torch.randn(3, generator=g, dtype=torch.float64)
    return x.to(torch.get_default_dtype())


class RawMLP(torch.nn.Module):
    """A plain MLP on raw coordinates (not equivariant): per-node vector ``"v"``, per-graph
    scalar ``"s"``, per-graph pseudoscalar-declared ``"chi"``."""

    def __init__(self):
        super().__init__()
        self.node = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
        self.graph = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))

    def forward(self, data):
        batch = data.batch if data.batch is not None else torch.zeros(data.num_nodes, dtype=torch.long)
        pooled = scatter(self.graph(data.pos), batch, dim=0, reduce="sum")
        return {"v": self.node(data.pos), "s": pooled, "chi": pooled[:, :1]}


RAW_TYPES = {"v": Output("vector", "node"), "s": Output("scalar", "graph"), "chi": Output("pseudoscalar", "graph")}


def _clouds(sizes=((9, 1), (12, 2))):
    return [Data(pos=anisotropic_cloud(n, seed)) for n, seed in sizes]


def _nbody(sizes=((5, 3), (6, 4))):
    graphs = []
    for n, seed in sizes:
        g = torch.Generator().manual_seed(seed)
        edge_index = full_graph(None, num_nodes=n)
        charges = torch.randint(0, 2, (n,), generator=g) * 2.0 - 1.0
        dtype = torch.get_default_dtype()
        graphs.append(Data(pos=anisotropic_cloud(n, seed), vel=torch.randn(n, 3, generator=g).to(dtype),
                           edge_index=edge_index,
                           edge_attr=(charges[edge_index[0]] * charges[edge_index[1]]).unsqueeze(-1).to(dtype)))
    return graphs


def _case(name):
    """(backbone, wrapper kwargs, graphs, out_types for assert_equivariant)."""
    torch.manual_seed(0)
    if name == "pointnet":
        return PointNet(out_type="vector", level="node", hidden_channels=16, global_channels=32), {}, _clouds(), \
            {"y": "vector"}
    if name == "pointnet_graph":
        return PointNet(out_channels=2, hidden_channels=16, global_channels=32), {}, _clouds(), {"y": "scalar"}
    if name == "dgcnn":
        return DGCNN(out_type="vector", level="node", hidden_channels=16, global_channels=32, num_layers=2, k=4), \
            {}, _clouds(), {"y": "vector"}
    if name == "gnn":
        return GNN(hidden_channels=16, num_layers=2, edge_dim=1), {}, _nbody(), {"pos": "point"}
    if name == "mlp":
        return RawMLP(), {"outputs": RAW_TYPES}, _clouds(), {"v": "vector", "s": "scalar", "chi": "pseudoscalar"}
    raise KeyError(name)


CASES = ["pointnet", "pointnet_graph", "dgcnn", "gnn", "mlp"]


@pytest.mark.parametrize("batched", [False, True], ids=["single", "batch"])
@pytest.mark.parametrize("name", CASES)
def test_wrapped_backbone_is_e3_equivariant(name, batched):
    backbone, kwargs, graphs, out_types = _case(name)
    model = FrameAveraging(backbone, **kwargs)
    data = Batch.from_data_list(graphs) if batched else graphs[0]
    assert_equivariant(model, data, "E3", out_types=out_types)


@pytest.mark.parametrize("name", CASES)
def test_unwrapped_backbone_is_not(name):
    backbone, _, graphs, out_types = _case(name)
    with pytest.raises(AssertionError, match="fails the rotation check"):
        assert_equivariant(backbone, graphs[0], "E3", out_types=out_types)


@pytest.mark.parametrize("name", CASES)
def test_batch_equals_single_graphs(name):
    backbone, kwargs, graphs, _ = _case(name)
    assert_batch_consistent(FrameAveraging(backbone, **kwargs), graphs)


def test_averaging_an_equivariant_model_changes_nothing():
    from equigraph.models import EGNN

    torch.manual_seed(0)
    egnn = EGNN(hidden_channels=8, num_layers=2, out_channels=1)
    model = FrameAveraging(egnn)
    assert model.outputs == egnn.outputs
    data = Batch.from_data_list([Data(z=torch.randint(1, 9, (n,)), pos=anisotropic_cloud(n, n)) for n in (5, 7)])
    expected, out = egnn(data), model(data)
    tol = 1e-5 if torch.get_default_dtype() == torch.float32 else 1e-12
    for key in expected:
        assert torch.allclose(out[key], expected[key], atol=tol), key


def test_forces_of_an_averaged_energy_are_equivariant():
    # The gradient flows through the eigenvectors: detached frames would give wrong forces.
    torch.manual_seed(0)
    model = FrameAveraging(RawMLP(), outputs=RAW_TYPES)

    def energy_and_forces(data):
        pos = data.pos.detach().requires_grad_(True)
        data = data.clone()
        data.pos = pos
        energy = model(data)["s"][:, 0]
        forces = -torch.autograd.grad(energy.sum(), pos)[0]
        return {"energy": energy, "forces": forces}

    assert_equivariant(energy_and_forces, Batch.from_data_list(_clouds()), out_types={"forces": "vector"})


def test_rotation_only_frames_miss_reflections():
    torch.manual_seed(0)
    data = _clouds()[0]
    types = {"v": "vector", "s": "scalar", "chi": "pseudoscalar"}
    se3 = FrameAveraging(RawMLP(), group="SE3", outputs=RAW_TYPES)
    assert se3.frame_size == 4
    assert_equivariant(se3, data, "SE3", out_types=types)
    with pytest.raises(AssertionError, match="'chi' \\(pseudoscalar\\) fails the reflection check"):
        assert_equivariant(se3, data, "E3", out_types=types)
    # the 8-element frame gets the pseudoscalar right, reflections included
    assert_equivariant(FrameAveraging(se3.backbone, outputs=RAW_TYPES), data, "E3", out_types=types)


def test_groups_without_translations():
    torch.manual_seed(0)
    types = {"v": "vector", "s": "scalar", "chi": "pseudoscalar"}
    model = FrameAveraging(RawMLP(), group="O3", outputs=RAW_TYPES)
    data = _clouds()[0]
    assert_equivariant(model, data, "O3", out_types=types)
    with pytest.raises(AssertionError, match="fails the translation check"):
        assert_equivariant(model, data, "E3", out_types=types)
    assert_equivariant(FrameAveraging(model.backbone, group="SO3", outputs=RAW_TYPES), data, "SO3", out_types=types)


def test_velocities_move_with_the_positions():
    backbone, _, graphs, _ = _case("gnn")
    data = graphs[0]
    # without vel in in_types the velocities are fed raw to the canonical copies: not equivariant
    with pytest.raises(AssertionError, match="fails the rotation check"):
        assert_equivariant(FrameAveraging(backbone, in_types={}), data, out_types={"pos": "point"})
    assert_equivariant(FrameAveraging(backbone, in_types={"vel": "vector"}), data, out_types={"pos": "point"})


def test_other_inputs_by_type_and_level():
    """Normals (node vectors), a per-graph direction and per-edge vectors, all read by the backbone."""
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))

    def backbone(data):
        j, i = data.edge_index
        edge = scatter(data.edge_vec, i, dim=0, dim_size=data.num_nodes, reduce="sum")
        features = torch.cat([data.pos, data.normal, data.axis[data.batch], edge], dim=-1)
        out = mlp(features)
        return {"y": out, "e": out[j] - out[i]}

    graphs = []
    for n, seed in ((7, 5), (9, 6)):
        pos = anisotropic_cloud(n, seed)
        edge_index = torch.stack([torch.arange(n), torch.roll(torch.arange(n), 1)])
        graphs.append(Data(pos=pos, normal=torch.randn(n, 3), axis=torch.randn(1, 3), edge_index=edge_index,
                           edge_vec=pos[edge_index[0]] - pos[edge_index[1]]))
    data = Batch.from_data_list(graphs)
    in_types = {"normal": "vector", "axis": ("vector", "graph"), "edge_vec": Output("vector", "edge")}
    model = FrameAveraging(backbone, outputs={"y": ("vector", "node"), "e": {"type": "vector", "level": "edge"}},
                           in_types=in_types)
    assert_equivariant(model, data, in_types={"pos": "point", "normal": "vector", "axis": "vector",
                                              "edge_vec": "vector"}, out_types={"y": "vector", "e": "vector"},
                       edge_outputs=["e"], node_outputs=["y"])


def test_irreps_outputs():
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 13))
    model = FrameAveraging(lambda data: mlp(data.pos), outputs={"y": Output("0o+1o+1e+2e+0e", "node")})
    data = _clouds()[0]
    out = model(data)
    assert set(out) == {"y"} and out["y"].shape == (9, 13)
    assert_equivariant(model, data, out_types={"y": "0o+1o+1e+2e+0e"})


def test_stochastic_frames():
    torch.manual_seed(0)
    backbone = RawMLP()
    data = Batch.from_data_list(_clouds())
    full = FrameAveraging(backbone, outputs=RAW_TYPES)
    stochastic = FrameAveraging(backbone, outputs=RAW_TYPES, stochastic=True)
    # eval: the full average
    stochastic.eval()
    for key, value in full(data).items():
        assert torch.equal(stochastic(data)[key], value)
    # training: per graph, exactly the output of one frame element
    stochastic.train()
    frames = pca_frames(data.pos, data.batch, num_graphs=2)
    copies = canonicalize(data, frames, {"pos": ("point", "node")})
    raw = backbone(copies)
    per_element = []
    for f in range(8):
        one = frames.select(torch.full((2,), f))
        rows = {"v": raw["v"].view(8, -1, 3)[f], "s": raw["s"].view(8, 2, -1)[f], "chi": raw["chi"].view(8, 2, -1)[f]}
        per_element.append(average_outputs(rows, one, {k: (o.type, o.level) for k, o in RAW_TYPES.items()}, data))
    seen = set()
    for _ in range(6):
        out = stochastic(data)
        for g in range(2):
            matches = [f for f in range(8) if torch.allclose(out["s"][g], per_element[f]["s"][g], atol=1e-5)
                       and torch.allclose(out["v"][data.batch == g], per_element[f]["v"][data.batch == g], atol=1e-5)]
            assert matches, g
            seen.add((g, matches[0]))
    assert len(seen) > 2  # it does sample


def _symmetric_and_generic():
    tetrahedron = Data(pos=torch.tensor([[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) + 0.5)
    return [tetrahedron, _clouds()[0]]


def test_degenerate_spectra_warn_once_and_stay_finite():
    torch.manual_seed(0)
    model = FrameAveraging(RawMLP(), outputs=RAW_TYPES)
    graphs = _symmetric_and_generic()
    data = Batch.from_data_list(graphs)
    with pytest.warns(DegenerateFrameWarning, match="1 of 2 graphs have a degenerate PCA spectrum"):
        out = model(data)
    assert all(torch.isfinite(v).all() for v in out.values())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(data)
    assert model.num_degenerate == 2
    # The documented meaning: the average over the (arbitrary) basis eigh returned ...
    frames = pca_frames(data.pos, data.batch, num_graphs=2)
    declared = {k: (o.type, o.level) for k, o in RAW_TYPES.items()}
    again = average_outputs(model.backbone(canonicalize(data, frames, {"pos": ("point", "node")})), frames,
                            declared, data)
    for key in out:
        assert torch.allclose(out[key], again[key])
    # ... and the generic graph is unaffected by its degenerate neighbour
    alone = model(graphs[1])
    assert torch.allclose(out["v"][4:], alone["v"], atol=1e-5)


def test_collinear_points():
    """Exact from the positions alone (linear molecules); not with velocities off the line."""
    torch.manual_seed(0)
    types = {"v": "vector", "s": "scalar", "chi": "pseudoscalar"}
    model = FrameAveraging(RawMLP(), outputs=RAW_TYPES)
    line = Data(pos=torch.linspace(-1, 1, 6).unsqueeze(1) * torch.tensor([1.0, 2.0, 0.5]) + 0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_equivariant(model, line, out_types=types)
    mlp = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    with_vel = FrameAveraging(lambda d: mlp(torch.cat([d.pos, d.vel], -1)), outputs={"y": ("vector", "node")})
    line.vel = torch.randn(6, 3)
    with pytest.warns(DegenerateFrameWarning, match="1 of 1 graphs"):
        with pytest.raises(AssertionError, match="fails the rotation check"):
            assert_equivariant(with_vel, line, out_types={"y": "vector"})


@pytest.mark.parametrize("group, order", [("octahedral", 24), ("full_octahedral", 48)])
def test_group_averaging_is_exact_for_group_elements(group, order):
    torch.manual_seed(0)
    model = GroupAveraging(RawMLP(), group=group, outputs=RAW_TYPES)
    assert model.frame_size == order
    data = _clouds()[0]
    ref = model(data)
    shift = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    tol = 1e-4 if torch.get_default_dtype() == torch.float32 else 1e-10
    for R in model.rotations[::5]:
        moved = Data(pos=transform(data.pos, "point", R, shift).to(data.pos.dtype))
        out = model(moved)
        for key, type_ in (("v", "vector"), ("s", "scalar"), ("chi", "pseudoscalar")):
            expected = transform(ref[key], type_, R, shift)
            assert torch.allclose(out[key].double(), expected, atol=tol), (key, R)
    # only approximately equivariant to rotations outside the group
    with pytest.raises(AssertionError, match="fails the rotation check"):
        assert_equivariant(model, data, out_types={"v": "vector", "s": "scalar", "chi": "pseudoscalar"})


def test_group_averaging_options():
    torch.manual_seed(0)
    sample = GroupAveraging(RawMLP(), group=6, outputs=RAW_TYPES, center=False, seed=2)
    assert sample.frame_size == 6 and "center=False" in repr(sample)
    data = _clouds()[0]
    assert sample(data)["v"].shape == (9, 3)
    given = GroupAveraging(sample.backbone, group=sample.rotations[:2].clone(), outputs=RAW_TYPES)
    assert given.frame_size == 2 and "2 matrices" in repr(given)
    # translations: the centroid, or none
    moved = Data(pos=data.pos + 1.0)
    centred = GroupAveraging(sample.backbone, group="octahedral", outputs=RAW_TYPES)
    assert torch.allclose(centred(moved)["v"], centred(data)["v"], atol=1e-5)
    assert not torch.allclose(sample(moved)["v"], sample(data)["v"], atol=1e-3)
    assert_batch_consistent(centred, _clouds())


def test_registry_builds_nested_specs():
    for name in ("frame_averaging", "group_averaging", "pointnet", "dgcnn", "gnn", "fa_local_pointnet"):
        assert name in available_models()
    spec = {"name": "frame_averaging", "group": "SE3",
            "backbone": {"name": "dgcnn", "out_type": "vector", "level": "node", "hidden_channels": 8,
                         "global_channels": 16, "num_layers": 2, "k": 4}}
    model = build_model(spec)
    assert isinstance(model, FrameAveraging) and isinstance(model.backbone, DGCNN)
    assert model.outputs == {"y": Output("vector", "node")} and model.frame_size == 4
    assert spec_of(model)["backbone"]["name"] == "dgcnn"
    assert model(_clouds()[0])["y"].shape == (9, 3)
    assert isinstance(build_model({"name": "group_averaging", "backbone": "pointnet"}).backbone, PointNet)
    with pytest.raises(ValueError, match="model 'frame_averaging': stochastic must be bool"):
        build_model({"name": "frame_averaging", "backbone": "pointnet", "stochastic": "yes"})


def test_save_and_load_a_nested_spec(tmp_path):
    from equigraph.models import load, save

    torch.manual_seed(0)
    model = build_model({"name": "group_averaging", "group": "full_octahedral",
                         "backbone": {"name": "pointnet", "out_type": "vector", "level": "node",
                                      "hidden_channels": 8, "global_channels": 8}})
    save(model, tmp_path / "model.pt")
    again = load(tmp_path / "model.pt")
    data = _clouds()[0]
    assert isinstance(again, GroupAveraging) and again.frame_size == 48
    assert torch.allclose(again(data)["y"], model(data)["y"])


def test_declarations():
    torch.manual_seed(0)
    backbone = PointNet(out_type="vector", level="node", hidden_channels=8, global_channels=8)
    assert FrameAveraging(backbone).outputs == {"y": Output("vector", "node")}
    # outputs= overrides the backbone's own declaration, key by key
    model = FrameAveraging(backbone, outputs={"y": ("pseudovector", "node")})
    assert model.outputs == {"y": Output("pseudovector", "node")}
    # a backbone returning a plain tensor has it returned as "y"
    tensor_model = FrameAveraging(lambda data: scatter(data.pos, data.batch, dim=0) * 0 + 1.0, outputs={"y": "scalar"})
    out = tensor_model(_clouds()[0])
    assert set(out) == {"y"} and torch.allclose(out["y"], torch.ones(1, 3))
    assert "group=E3, frame_size=8, stochastic=False" in repr(model)
    model.reset_parameters()
    assert model.cutoff is None and model.normalizer("y") is None


def test_bad_construction():
    with pytest.raises(ValueError, match="backbone must be a module, a callable"):
        FrameAveraging(3)
    with pytest.raises(ValueError, match="the backbone declares no outputs"):
        FrameAveraging(lambda data: data.pos)
    with pytest.raises(ValueError, match="outputs must be a dict"):
        FrameAveraging(lambda data: data.pos, outputs="vector")
    with pytest.raises(ValueError, match=r"outputs\['y'\] must be a type, an Output or a \(type, level\) pair"):
        FrameAveraging(lambda data: data.pos, outputs={"y": ("vector", "node", 1)})
    with pytest.raises(ValueError, match=r"outputs\['y'\]: unknown field\(s\) \['kind'\]"):
        FrameAveraging(lambda data: data.pos, outputs={"y": {"kind": "vector"}})
    with pytest.raises(ValueError, match="Output.level must be one of"):
        FrameAveraging(lambda data: data.pos, outputs={"y": ("vector", "atom")})
    with pytest.raises(ValueError, match="neither one of"):
        FrameAveraging(lambda data: data.pos, outputs={"y": "spinor"})
    with pytest.raises(ValueError, match="in_types must be a dict"):
        FrameAveraging(lambda data: data.pos, outputs={"y": "scalar"}, in_types=["vel"])
    with pytest.raises(ValueError, match=r"in_types\['vel'\]: level must be one of"):
        FrameAveraging(lambda data: data.pos, outputs={"y": "scalar"}, in_types={"vel": ("vector", "atom")})
    with pytest.raises(ValueError, match=r"in_types\['pos'\] must be 'point'"):
        FrameAveraging(lambda data: data.pos, outputs={"y": "scalar"}, in_types={"pos": "vector"})
    with pytest.raises(ValueError, match="`group` must be one of"):
        FrameAveraging(lambda data: data.pos, group="E2", outputs={"y": "scalar"})
    with pytest.raises(ValueError, match="`tol` must be a finite number"):
        FrameAveraging(lambda data: data.pos, outputs={"y": "scalar"}, tol=float("nan"))
    with pytest.raises(ValueError, match="unknown model 'pointnet2'"):
        FrameAveraging("pointnet2")
    with pytest.raises(ValueError, match="`group` must be one of"):
        GroupAveraging(lambda data: data.pos, group="cubic", outputs={"y": "scalar"})


def test_bad_inputs():
    vector = FrameAveraging(lambda data: data.pos, outputs={"y": Output("vector", "node")})
    with pytest.raises(ValueError, match="data must be a torch_geometric Data or Batch"):
        vector({"pos": torch.randn(4, 3)})
    with pytest.raises(ValueError, match="data.pos is missing"):
        vector(Data(x=torch.randn(4, 3)))
    with pytest.raises(ValueError, match="`data.pos` contains NaN or inf"):
        vector(Data(pos=torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, float("nan"), 0]])))
    with pytest.raises(ValueError, match=r"at least 3 points per graph; graph\(s\) \[1\] have \[2\]"):
        vector(Batch.from_data_list([Data(pos=torch.randn(4, 3)), Data(pos=torch.randn(2, 3))]))
    data = _clouds()[0]
    with pytest.raises(ValueError, match="declared 'vector' but has shape \\[72, 2\\]; a vector must be \\[\\*, 3\\]"):
        FrameAveraging(lambda d: d.pos[:, :2], outputs={"y": Output("vector", "node")})(data)
    with pytest.raises(ValueError, match="declared graph-level, so it needs 8 x 1 rows .* but has 72"):
        FrameAveraging(lambda d: d.pos, outputs={"y": "vector"})(data)
    with pytest.raises(ValueError, match="must return a Tensor or a dict of Tensors, got tuple"):
        FrameAveraging(lambda d: (d.pos,), outputs={"y": "vector"})(data)
    with pytest.raises(ValueError, match=r"did not return the declared output\(s\) \['z'\]"):
        FrameAveraging(lambda d: {"y": d.pos}, outputs={"y": ("vector", "node"), "z": "scalar"})(data)
    with pytest.raises(ValueError, match="returned 'w', which has no declared type"):
        FrameAveraging(lambda d: {"y": d.pos, "w": d.pos}, outputs={"y": ("vector", "node")})(data)
    with pytest.raises(ValueError, match="must be a floating-point tensor to be averaged"):
        FrameAveraging(lambda d: d.batch, outputs={"y": ("scalar", "node")})(data)
    with pytest.raises(ValueError, match="declared edge-level but the data has no edge_index"):
        FrameAveraging(lambda d: d.pos, outputs={"y": ("vector", "edge")})(data)
    with pytest.raises(ValueError, match="input 'normal' must be a floating-point tensor attribute"):
        FrameAveraging(lambda d: d.pos, outputs={"y": ("vector", "node")}, in_types={"normal": "vector"})(data)
    with pytest.raises(ValueError, match=r"input 'vel' is declared 'vector' but has shape \[9, 2\]"):
        FrameAveraging(lambda d: d.pos, outputs={"y": ("vector", "node")})(Data(pos=data.pos, vel=torch.zeros(9, 2)))


@pytest.mark.parametrize("dtype", [torch.float32], indirect=True, ids=["float32"])
def test_example_quick_mode_runs(dtype, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "frame_averaging_pyg.py"
    spec = importlib.util.spec_from_file_location("frame_averaging_pyg", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    example.main(quick=True)
    out = capsys.readouterr().out
    assert out.count("frame-averaged: passes") == 2 and out.count("fails, as expected") == 2
    assert "rotated test" in out
