"""The test kit must pass equivariant modules and, just as important, catch broken ones."""
import pytest
import torch
from e3nn import o3
from torch_geometric.data import Batch, Data
from torch_geometric.utils import scatter

from equigraph.data import keys as K
from equigraph.nn import edge_vec
from equigraph.testing import (
    EquivariantModelTests,
    assert_batch_consistent,
    assert_equivariant,
    default_tolerance,
    random_o3,
    random_rotation,
    transform,
)

def _batch_of(data):
    b = getattr(data, K.BATCH, None)
    return b if b is not None else torch.zeros(data.num_nodes, dtype=torch.long)


def centred(data):
    """Reference module: equivariant in every way the kit checks."""
    b = _batch_of(data)
    rel = data.pos - scatter(data.pos, b, dim=0, reduce="mean")[b]
    dist = rel.norm(dim=-1)
    return {
        "h": torch.stack([dist, dist.square()], dim=-1),  # node scalars
        "rel": rel,  # node vectors (translation invariant)
        "pos": data.pos + 0.1 * rel,  # updated points
        "rg": scatter(dist.square(), b, dim=0, reduce="mean").sqrt(),  # graph scalar
    }


def _graph(n=5, seed=0, **extra):
    g = torch.Generator().manual_seed(seed)
    return Data(pos=torch.randn(n, 3, generator=g), **extra)


def _batch():
    return Batch.from_data_list([_graph(4, 0), _graph(6, 1), _graph(3, 2)])


@pytest.mark.geometric
@pytest.mark.parametrize("make", [_graph, _batch], ids=["graph", "batch"])
def test_equivariant_reference_passes(dtype, make):
    data = make()
    errors = assert_equivariant(centred, data, out_types={"rel": "vector"})
    assert set(errors) == {"rotation", "reflection", "translation", "permutation"}
    assert set(errors["rotation"]) == {"h", "rel", "pos", "rg"}
    atol, _ = default_tolerance(dtype)
    assert max(max(e.values()) for e in errors.values()) < 100 * atol


@pytest.mark.geometric
def test_adding_a_fixed_vector_fails_rotation(dtype):
    def biased(data):
        return data.pos + torch.tensor([1.0, 0.0, 0.0])

    with pytest.raises(AssertionError, match=r"'output' \(point\) fails the rotation check"):
        assert_equivariant(biased, _graph(), out_types="point", permutation=False)


@pytest.mark.geometric
def test_a_coordinate_used_as_a_feature_fails(dtype):
    with pytest.raises(AssertionError, match="rotation check"):
        assert_equivariant(lambda d: d.pos[:, 0:1].exp(), _graph())


@pytest.mark.geometric
def test_translation_variant_scalar_fails_only_with_translations(dtype):
    def norm_from_origin(data):
        return data.pos.norm(dim=-1)

    with pytest.raises(AssertionError, match="translation check") as info:
        assert_equivariant(norm_from_origin, _graph(), group="E3")
    assert "rotation check" not in str(info.value) and "reflection check" not in str(info.value)
    assert_equivariant(norm_from_origin, _graph(), group="O3")


def _with_vel(n=5, seed=3):
    g = torch.Generator().manual_seed(seed)
    return Data(pos=torch.randn(n, 3, generator=g), vel=torch.randn(n, 3, generator=g))


def _angular_momentum(data):
    rel = data.pos - data.pos.mean(dim=0)
    return torch.cross(rel, data.vel, dim=-1)


@pytest.mark.geometric
def test_pseudovector_declared_as_vector_fails_under_reflection(dtype):
    data = _with_vel()
    with pytest.raises(AssertionError, match=r"'output' \(vector\) fails the reflection check") as info:
        assert_equivariant(_angular_momentum, data, out_types="vector")
    assert "rotation check" not in str(info.value)
    assert_equivariant(_angular_momentum, data, out_types="pseudovector")
    assert_equivariant(_angular_momentum, data, group="SE3", out_types="vector")


@pytest.mark.geometric
def test_pseudoscalar(dtype):
    def triple(data):
        rel = data.pos - data.pos.mean(dim=0)
        return (torch.cross(rel, data.vel, dim=-1) * rel.roll(1, dims=0)).sum(-1)

    assert_equivariant(triple, _with_vel(), out_types="pseudoscalar", permutation=False)
    with pytest.raises(AssertionError, match="reflection"):
        assert_equivariant(triple, _with_vel(), out_types="scalar", permutation=False)


def _edges(data):
    vec = edge_vec(data.pos, data.edge_index, data.get("shift"), data.get("cell"), data.get("batch"))
    return vec


@pytest.mark.geometric
def test_irreps_outputs_use_e3nn_basis(dtype):
    data = _graph(4)
    data.edge_index = torch.tensor([[1, 2, 3, 0, 0], [0, 0, 1, 2, 3]])

    def sh(d):
        return o3.spherical_harmonics("1o+2e", _edges(d), normalize=True)

    assert_equivariant(sh, data, out_types=o3.Irreps("1o+2e"))
    assert_equivariant(sh, data, out_types="1x1o+1x2e")
    with pytest.raises(AssertionError, match="reflection"):
        assert_equivariant(sh, data, out_types="1o+2o", group="O3")
    # e3nn 0.6 orders l=1 components (x, y, z): "1o" is a Cartesian "vector"
    assert_equivariant(lambda d: sh(d)[:, :3], data, out_types="vector")
    with pytest.raises(AssertionError, match="rotation"):
        assert_equivariant(lambda d: sh(d)[:, 3:], data, out_types="5x0e")


def _periodic():
    g = torch.Generator().manual_seed(5)
    cell = torch.tensor([[[3.0, 0.0, 0.0], [0.7, 3.2, 0.0], [0.4, 0.5, 3.5]]])
    pos = torch.rand(3, 3, generator=g) @ cell[0]
    edge_index = torch.tensor([[1, 0, 2, 0, 1], [0, 1, 0, 2, 1]])
    shift = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 1.0], [0.0, 1.0, -1.0], [0.0, 0.0, 1.0]])
    return Data(pos=pos, cell=cell, edge_index=edge_index, shift=shift, pbc=torch.ones(1, 3, dtype=torch.bool))


@pytest.mark.geometric
def test_periodic_edge_outputs_follow_their_edges(dtype):
    def lengths(d):
        vec = _edges(d)
        length = vec.norm(dim=-1)
        return {"length": length, "vec": vec, "node": scatter(length, d.edge_index[1], dim=0, dim_size=d.num_nodes)}

    errors = assert_equivariant(lengths, _periodic())
    assert set(errors["permutation"]) == {"length", "vec", "node"}


@pytest.mark.geometric
def test_output_depending_on_node_labels_fails_permutation(dtype):
    def labelled(d):
        return {"first": d.edge_index[0].to(d.pos.dtype), "idx": torch.arange(d.num_nodes, dtype=d.pos.dtype)}

    with pytest.raises(AssertionError, match="permutation") as info:
        assert_equivariant(labelled, _periodic())
    assert "'first'" in str(info.value) and "'idx'" in str(info.value)
    assert "rotation" not in str(info.value)


@pytest.mark.geometric
def test_cell_input_is_rotated(dtype):
    def cell_scalars(d):
        return {"gram": (d.cell @ d.cell.transpose(-1, -2)).reshape(1, 9), "first_row_x": d.cell[:, 0, :1]}

    errors = assert_equivariant(lambda d: cell_scalars(d)["gram"], _periodic())
    assert errors["rotation"]["output"] >= 0
    with pytest.raises(AssertionError, match="'first_row_x'"):
        assert_equivariant(cell_scalars, _periodic())


@pytest.mark.geometric
def test_tuple_outputs_and_their_types(dtype):
    def pair(d):
        out = centred(d)
        return out["h"], out["rel"]

    errors = assert_equivariant(pair, _graph(), out_types=["scalar", "vector"])
    assert set(errors["rotation"]) == {"0", "1"}
    with pytest.raises(AssertionError, match=r"'1' \(scalar\)"):
        assert_equivariant(pair, _graph())


@pytest.mark.geometric
def test_in_types_replace_the_defaults(dtype):
    data = _with_vel()
    # vel is transformed by default ...
    assert_equivariant(_angular_momentum, data, out_types="pseudovector")
    # ... and left alone when in_types says only pos moves, which breaks the cross product
    with pytest.raises(AssertionError, match="rotation"):
        assert_equivariant(_angular_momentum, data, in_types={"pos": "point"}, out_types="pseudovector")


def test_tolerance_is_dtype_dependent_and_overridable():
    data = _graph()
    data.pos = data.pos.double()

    def slightly_off(d):
        return d.pos - d.pos.mean(0) + 1e-6 * torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)

    with pytest.raises(AssertionError, match="tolerance"):
        assert_equivariant(slightly_off, data, out_types="vector")
    assert_equivariant(slightly_off, data, out_types="vector", atol=1e-5)
    assert default_tolerance(torch.float32)[0] > default_tolerance(torch.float64)[0]


@pytest.mark.geometric
def test_as_many_nodes_as_edges_needs_edge_outputs(dtype):
    data = _graph(4)
    data.edge_index = torch.tensor([[1, 2, 3, 0], [0, 0, 1, 2]])
    with pytest.raises(AssertionError, match="edge_outputs="):
        assert_equivariant(lambda d: _edges(d).norm(dim=-1), data)
    assert_equivariant(lambda d: _edges(d).norm(dim=-1), data, edge_outputs=["output"])
    assert_equivariant(lambda d: {"edge_length": _edges(d).norm(dim=-1)}, data)


def test_node_outputs_override():
    data = _graph(3)

    def per_graph_row(d):  # 3 rows that are *not* nodes: must not be permuted
        return (d.pos - d.pos.mean(0)).norm(dim=-1).sort().values

    with pytest.raises(AssertionError, match="permutation"):
        assert_equivariant(per_graph_row, data)
    assert_equivariant(per_graph_row, data, node_outputs=[])


@pytest.mark.geometric
def test_seeded_generator_is_reproducible(dtype):
    a = assert_equivariant(centred, _graph(), out_types={"rel": "vector"}, generator=7)
    b = assert_equivariant(centred, _graph(), out_types={"rel": "vector"}, generator=torch.Generator().manual_seed(7))
    assert a == b


@pytest.mark.geometric
def test_nan_output_is_reported(dtype):
    with pytest.raises(AssertionError, match="NaN or inf"):
        assert_equivariant(lambda d: d.pos.norm(dim=-1) * float("nan"), _graph())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(group="E2"), "`group` must be one of"),
        (dict(out_types={"r": "spinor"}), "neither one of"),
        (dict(out_types={"nope": "scalar"}), "did not return"),
        (dict(in_types={"vel": "vector"}), "'vel'"),
        (dict(num_trials=0), "num_trials"),
        (dict(atol=-1.0), "atol"),
        (dict(generator="seed"), "generator"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    module = lambda d: {"r": d.pos.norm(dim=-1)}  # noqa: E731
    with pytest.raises(ValueError, match=match):
        assert_equivariant(module, _graph(), **kwargs)


def test_bad_data_raises_value_error():
    with pytest.raises(ValueError, match="Data or Batch"):
        assert_equivariant(centred, {"pos": torch.zeros(3, 3)})
    with pytest.raises(ValueError, match="NaN or inf"):
        assert_equivariant(centred, Data(pos=torch.tensor([[0.0, float("nan"), 0.0]])))
    with pytest.raises(ValueError, match="last dimension is not 3"):
        assert_equivariant(lambda d: d.pos[:, :2], _graph(), out_types="vector")
    with pytest.raises(ValueError, match="dim 3"):
        assert_equivariant(lambda d: d.pos[:, :2], _graph(), out_types="1o")
    with pytest.raises(ValueError, match="Tensor"):
        assert_equivariant(lambda d: "energy", _graph())


def test_random_rotation_is_a_seeded_haar_rotation():
    R = random_rotation(2000, generator=0)
    eye = torch.eye(3, dtype=torch.float64).expand(2000, 3, 3)
    torch.testing.assert_close(R @ R.transpose(-1, -2), eye)
    torch.testing.assert_close(torch.det(R), torch.ones(2000, dtype=torch.float64))
    # Haar measure: every entry has mean 0 and variance 1/3
    assert R.mean(0).abs().max() < 0.05
    torch.testing.assert_close(R.square().mean(0), torch.full((3, 3), 1 / 3, dtype=torch.float64), atol=0.03, rtol=0)
    torch.testing.assert_close(random_rotation(generator=3), random_rotation(generator=3))
    assert random_rotation(dtype=torch.float32).dtype == torch.float32


def test_random_o3_parity():
    assert torch.det(random_o3(5, parity=True)).allclose(-torch.ones(5, dtype=torch.float64))
    assert torch.det(random_o3(5, parity=False)).allclose(torch.ones(5, dtype=torch.float64))
    dets = torch.det(random_o3(200, generator=1))
    assert (dets > 0).any() and (dets < 0).any()


def test_transform_types():
    R = random_o3(parity=True, generator=2)
    v = torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(transform(v, "scalar", R, t), v)
    torch.testing.assert_close(transform(v, "pseudoscalar", R, t), -v)
    torch.testing.assert_close(transform(v, "vector", R, t), v @ R.T)
    torch.testing.assert_close(transform(v, "pseudovector", R, t), -(v @ R.T))
    torch.testing.assert_close(transform(v, "point", R, t), v @ R.T + t)
    # "1o" is exactly the vector representation: D(R) == R to float64 precision.
    torch.testing.assert_close(transform(v, "1o", R, t), v @ R.T, atol=1e-12, rtol=0)


@pytest.mark.geometric
def test_batch_consistent_passes_and_catches_cross_graph_leaks(dtype):
    graphs = [_graph(4, 0), _graph(6, 1), _graph(3, 2)]
    errors = assert_batch_consistent(centred, graphs)
    assert set(errors) == {"h", "rel", "pos", "rg"}

    def leaky(d):  # centroid over the whole batch, ignoring `batch`
        return {"rel": d.pos - d.pos.mean(dim=0)}

    with pytest.raises(AssertionError, match="'rel' of graph 0"):
        assert_batch_consistent(leaky, graphs)


@pytest.mark.geometric
def test_batch_consistent_edge_outputs(dtype):
    a, b = _periodic(), _periodic()
    b.pos = b.pos + 0.1
    errors = assert_batch_consistent(lambda d: {"vec": _edges(d)}, [a, b])
    assert errors["vec"] < 1e-3


def test_batch_consistent_rejects_unsplittable_outputs():
    with pytest.raises(ValueError, match="cannot tell"):
        assert_batch_consistent(lambda d: d.pos.sum().reshape(1, 1).expand(2, 1), [_graph(4, 0), _graph(3, 1)])
    with pytest.raises(ValueError, match="non-empty"):
        assert_batch_consistent(centred, [])


def test_docs_testing_md_examples_run(capsys):
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "testing.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 3
    namespace = {"__name__": "docs_testing_md"}
    for block in blocks:
        exec(compile(block, "docs/testing.md", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "'rotation'" in printed and "fails the translation check" in printed


@pytest.mark.geometric
def test_unsorted_batch_vector(dtype):
    data = Data(pos=torch.randn(7, 3, generator=torch.Generator().manual_seed(9)), batch=torch.tensor([1, 0, 1, 0, 0, 1, 0]))
    errors = assert_equivariant(centred, data, out_types={"rel": "vector"})
    assert errors["permutation"]["rel"] < 1e-3

    def order_dependent(d):  # running sum over the node order: invariant to rotations only
        return {"s": centred(d)["h"][:, 0].cumsum(0)}

    with pytest.raises(AssertionError, match="'s' .* permutation check"):
        assert_equivariant(order_dependent, data)


class _Centred(torch.nn.Module):
    def forward(self, data):
        return centred(data)


class TestMixinOnAReferenceModel(EquivariantModelTests):
    out_types = {"rel": "vector"}

    @pytest.fixture
    def model(self):
        return _Centred()

    @pytest.fixture
    def data_list(self):
        return [_graph(4, 0), _graph(5, 1)]


def test_mixin_catches_a_broken_model():
    class Broken(EquivariantModelTests):
        out_types = {"rel": "vector"}

    graphs = [_graph(4, 0), _graph(5, 1)]
    leaky = lambda d: {"rel": d.pos - d.pos.mean(dim=0)}  # noqa: E731
    with pytest.raises(AssertionError, match="differs between the batch"):
        Broken().test_batch_consistent(leaky, graphs)
    with pytest.raises(AssertionError, match="rotation"):
        Broken().test_equivariant_batch(lambda d: {"rel": d.pos + 1.0}, graphs)


def test_non_geometric_tests_run_once_in_the_default_dtype(dtype):
    # the conftest fixture restored the default after every float64 run before this one
    assert dtype == torch.get_default_dtype() == torch.float32


@pytest.mark.geometric
def test_edge_inputs_without_edge_in_their_name_follow_their_edges(dtype):
    data = _periodic()
    data.bond_order = torch.arange(data.edge_index.size(1), dtype=dtype) + 1.0  # [E], E != N

    def weighted(d):
        length = _edges(d).norm(dim=-1) * d.bond_order
        return scatter(length, d.edge_index[1], dim=0, dim_size=d.num_nodes)

    assert_equivariant(weighted, data)


def test_changed_output_shape_is_reported():
    calls = []

    def shrinking(d):  # drops a row on every call after the first
        calls.append(1)
        return d.pos.norm(dim=-1)[: 4 if len(calls) == 1 else 3]

    with pytest.raises(AssertionError, match=r"shape \(3,\) instead of \(4,\)"):
        assert_equivariant(shrinking, _graph(4), group="SO3", permutation=False)


def test_irreps_outputs_of_a_float64_model_pass_under_float32_default_dtype():
    # Issue: e3nn builds Wigner matrices in the default dtype, so with float32 as default a
    # correct float64 model failed at float64 tolerance (error ~6e-6 against 2e-8).
    from e3nn import o3 as e3o3
    from torch_geometric.data import Data

    assert torch.get_default_dtype() == torch.float32
    irreps = e3o3.Irreps("1x0e+1x1o+1x2e")
    sh = e3o3.SphericalHarmonics(irreps, normalize=False, normalization="component")

    def model(data):
        return {"sh": sh(data.pos - data.pos.mean(dim=0)).sum(dim=0, keepdim=True) * 7.3}

    data = Data(pos=torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3)
    assert model(data)["sh"].dtype == torch.float64
    errors = assert_equivariant(model, data, "O3", out_types={"sh": irreps}, permutation=False)
    assert max(errors["rotation"].values()) < 1e-9


# ---------------------------------------------------------------------------------------
# Energy models: EnergyModelTests and its helpers, on an analytic pair potential
# ---------------------------------------------------------------------------------------
from equigraph.graph import RadiusInteractionGraph  # noqa: E402
from equigraph.models import ForceField  # noqa: E402
from equigraph.nn.cutoff import PolynomialCutoff  # noqa: E402
from equigraph.testing import (  # noqa: E402
    EnergyModelTests,
    assert_extensive,
    assert_forces_match_energy,
    assert_lattice_invariant,
    assert_smooth_at_cutoff,
    assert_stress_matches_energy,
)

F64 = torch.float64


class _PairPotential(torch.nn.Module):
    """Morse pairs times a smooth envelope: a reference energy model with known physics.
    ``envelope=False``, ``shifts=False`` and ``offset`` break it the ways the kit must catch."""

    def __init__(self, cutoff=2.5, envelope=True, shifts=True, offset=0.0):
        super().__init__()
        self.interaction_graph = RadiusInteractionGraph(cutoff)
        self.envelope = PolynomialCutoff(cutoff) if envelope else None
        self.shifts, self.offset = shifts, offset

    @property
    def cutoff(self):
        return self.interaction_graph.cutoff

    def forward(self, data):
        pos = data.pos
        batch = _batch_of(data)
        num_graphs = int(batch.max()) + 1
        edge_index, shift = self.interaction_graph.from_data(data)
        cell = data.get("cell") if shift is not None and self.shifts else None
        r = edge_vec(pos, edge_index, shift if cell is not None else None, cell, batch).norm(dim=-1)
        pair = torch.exp(-2.0 * (r - 1.2)) - 2.0 * torch.exp(-(r - 1.2))
        if self.envelope is not None:
            pair = pair * self.envelope(r)
        atom = scatter(0.5 * pair, edge_index[1], dim=0, dim_size=pos.size(0), reduce="sum")
        energy = scatter(atom, batch, dim=0, dim_size=num_graphs, reduce="sum") + self.offset
        return {"y": energy.unsqueeze(-1)}


def _pair_model(**kwargs):
    return ForceField(_PairPotential(**kwargs), stress=True).double().eval()


def _cluster(n, seed):
    gen = torch.Generator().manual_seed(seed)
    atoms = []
    while len(atoms) < n:
        x = 1.0 * torch.randn(3, generator=gen, dtype=F64)
        if all(float((x - y).norm()) > 0.9 for y in atoms):
            atoms.append(x)
    return Data(z=torch.ones(n, dtype=torch.long), pos=torch.stack(atoms), cell=10.0 * torch.eye(3, dtype=F64)[None],
                pbc=torch.zeros(1, 3, dtype=torch.bool))


def _crystal(seed=0):
    gen = torch.Generator().manual_seed(seed)
    cell = torch.tensor([[[3.0, 0.0, 0.0], [0.3, 2.9, 0.0], [0.2, -0.1, 3.1]]], dtype=F64)
    frac = torch.tensor([[0.0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]], dtype=F64)
    pos = frac @ cell[0] + 0.08 * torch.randn(4, 3, generator=gen, dtype=F64)
    return Data(z=torch.ones(4, dtype=torch.long), pos=pos, cell=cell, pbc=torch.ones(1, 3, dtype=torch.bool))


class TestEnergyMixinOnAPairPotential(EnergyModelTests):
    @pytest.fixture
    def model(self):
        return _pair_model()

    @pytest.fixture
    def data_list(self):
        return [_cluster(4, 0), _cluster(6, 1)]

    @pytest.fixture
    def periodic_data(self):
        return _crystal()


class TestEnergyMixinSlabWithoutStress(EnergyModelTests):
    """No stress output; periodic in two directions only."""

    @pytest.fixture
    def model(self):
        return ForceField(_PairPotential()).double().eval()

    @pytest.fixture
    def data_list(self):
        return [_cluster(5, 2), _cluster(3, 3)]

    @pytest.fixture
    def periodic_data(self):
        data = _crystal(1)
        data.pbc = torch.tensor([[True, True, False]])
        return data


class _Request:
    def __init__(self, value):
        self.value = value

    def getfixturevalue(self, name):
        return self.value


def _periodic_tests():
    tests = EnergyModelTests()
    return (tests.test_lattice_translation, tests.test_stress_matches_energy, tests.test_forces_match_energy_periodic,
            tests.test_equivariant_periodic, tests.test_batch_consistent_periodic)


def test_energy_mixin_skips_periodic_tests_without_the_fixture(request):
    # this module defines no `periodic_data` fixture outside the classes above
    for method in _periodic_tests():
        with pytest.raises(pytest.skip.Exception, match="periodic_data"):
            method(_pair_model(), request)


def test_energy_mixin_skips_periodic_tests_when_the_fixture_returns_none():
    for method in _periodic_tests():
        with pytest.raises(pytest.skip.Exception, match="periodic_data"):
            method(_pair_model(), _Request(None))


def test_energy_mixin_skips_cutoff_tests_without_a_cutoff():
    def no_cutoff(data):
        return {"energy": data.pos.square().sum().reshape(1), "forces": -2 * data.pos}

    graphs = [_cluster(3, 0), _cluster(4, 1)]
    with pytest.raises(pytest.skip.Exception, match="no cutoff"):
        EnergyModelTests().test_smooth_at_cutoff(no_cutoff, graphs)
    with pytest.raises(pytest.skip.Exception, match="no cutoff"):
        EnergyModelTests().test_extensive(no_cutoff, graphs)


def test_forces_check_catches_wrong_forces():
    class Flipped(torch.nn.Module):  # +dE/dx instead of -dE/dx
        def __init__(self):
            super().__init__()
            self.ff = _pair_model()

        def forward(self, data):
            out = self.ff(data)
            return {**out, "forces": -out["forces"]}

    data = _cluster(4, 0)
    assert assert_forces_match_energy(_pair_model(), data) < 1e-8
    with pytest.raises(AssertionError, match=r"not minus the gradient of 'energy': atom \d [xyz]: model .* vs "
                                             r"finite difference .* of 12 coordinates fail"):
        assert_forces_match_energy(Flipped(), data)
    with pytest.raises(AssertionError, match="not minus the gradient"):
        EnergyModelTests().test_forces_match_energy(Flipped(), [data, _cluster(5, 1)])


def test_stress_check_catches_wrong_stress():
    def doubled(data):
        out = _pair_model()(data)
        return {**out, "stress": 2 * out["stress"]}

    def transposed_sign(data):  # antisymmetric error: the symmetric-strain derivative differs
        out = _pair_model()(data)
        return {**out, "stress": out["stress"] + torch.tensor([[0, 1e-2, 0], [-1e-2, 0, 0], [0, 0, 0]], dtype=F64)}

    data = _crystal()
    assert assert_stress_matches_energy(_pair_model(), data) < 1e-8
    for broken in (doubled, transposed_sign):
        with pytest.raises(AssertionError, match=r"not \(1/V\) dE/dstrain .* graph 0, component [xyz]{2}"):
            assert_stress_matches_energy(broken, data)


def test_lattice_check_catches_dropped_periodic_shifts():
    data = _crystal()
    errors = assert_lattice_invariant(_pair_model(), data)
    assert set(errors) == {"energy", "forces", "stress"} and max(errors.values()) < 1e-12
    with pytest.raises(AssertionError, match=r"'energy' changes when atom 0 moved by n=\[1, -1, 2\]"):
        assert_lattice_invariant(_pair_model(shifts=False), data)
    with pytest.raises(AssertionError, match="every atom moved"):
        EnergyModelTests().test_lattice_translation(_pair_model(shifts=False), _Request(data))


def test_lattice_check_moves_points_with_their_atoms():
    def with_points(data):
        out = _pair_model()(data)
        return {**out, "pos": data.pos + 0.01 * out["forces"]}

    errors = assert_lattice_invariant(with_points, _crystal(), atom=-1, n=[0, 2, -1])
    assert errors["pos"] < 1e-12


def test_smoothness_check_catches_a_hard_cutoff():
    data = _cluster(5, 0)
    jumps = assert_smooth_at_cutoff(_pair_model(), data, 2.5)
    assert set(jumps) == {"energy", "forces", "stress"}
    crossing = r"'energy' jumps as atom 4 crosses the cutoff \(r from 2.5 - 1e-05 to 2.5 \+ 1e-05 Å\): change"
    with pytest.raises(AssertionError, match=crossing):
        assert_smooth_at_cutoff(_pair_model(envelope=False), data, 2.5)
    with pytest.raises(AssertionError, match="'forces' jumps"):
        EnergyModelTests().test_smooth_at_cutoff(_pair_model(envelope=False), [data, _cluster(3, 1)])


def test_smoothness_check_catches_outputs_that_move_beyond_the_cutoff():
    def leaky(data):  # a far-reaching term the cutoff does not remove
        out = _pair_model()(data)
        return {**out, "energy": out["energy"] + 1e-3 * data.pos.norm(dim=-1).sum()}

    with pytest.raises(AssertionError, match="'energy' still changes beyond the cutoff"):
        assert_smooth_at_cutoff(leaky, _cluster(4, 0), 2.5, keys=["energy"])


def test_extensivity_check_catches_a_per_graph_constant():
    a, b = _cluster(4, 0), _cluster(5, 1)
    errors = assert_extensive(_pair_model(), a, b, 2.5)
    assert set(errors) == {"energy", "forces"} and max(errors.values()) < 1e-12
    with pytest.raises(AssertionError, match=r"E\(A\+B\) = .* but E\(A\) \+ E\(B\) = "):
        assert_extensive(_pair_model(offset=0.3), a, b, 2.5)
    # the cutoff passed is too small for this model: the fragments still interact
    with pytest.raises(AssertionError, match="'forces' of the joined fragments differs"):
        assert_extensive(_pair_model(), a, b, 0.5, gap=0.1)


def test_energy_helpers_reject_bad_input():
    model, mol, crystal = _pair_model(), _cluster(4, 0), _crystal()
    with pytest.raises(ValueError, match="float64 positions"):
        assert_forces_match_energy(model, Data(z=mol.z, pos=mol.pos.float()))
    with pytest.raises(ValueError, match="float64 positions"):
        assert_stress_matches_energy(model, Data(z=crystal.z, pos=crystal.pos.float(), cell=crystal.cell,
                                                 pbc=crystal.pbc))
    with pytest.raises(ValueError, match="`atoms`"):
        assert_forces_match_energy(model, mol, atoms=[4])
    with pytest.raises(ValueError, match="`step`"):
        assert_forces_match_energy(model, mol, step=0.0)
    with pytest.raises(ValueError, match="`atol`"):
        assert_forces_match_energy(model, mol, atol=-1.0)
    with pytest.raises(ValueError, match="returned no"):
        assert_forces_match_energy(lambda d: {"energy": d.pos.sum().reshape(1)}, mol)
    with pytest.raises(ValueError, match="must return a dict"):
        assert_forces_match_energy(lambda d: d.pos.sum(), mol)
    with pytest.raises(ValueError, match="`data.cell`"):
        assert_stress_matches_energy(model, Data(z=mol.z, pos=mol.pos))
    with pytest.raises(ValueError, match="zero volume"):
        assert_stress_matches_energy(model, Data(z=mol.z, pos=mol.pos, cell=torch.zeros(1, 3, 3, dtype=F64)))
    with pytest.raises(ValueError, match="no periodic direction"):
        assert_lattice_invariant(model, mol)
    with pytest.raises(ValueError, match="`data.pbc` is missing"):
        assert_lattice_invariant(model, Data(z=mol.z, pos=mol.pos, cell=mol.cell))
    with pytest.raises(ValueError, match="integer lattice offsets"):
        assert_lattice_invariant(model, crystal, n=[0.5, 0, 0])
    with pytest.raises(ValueError, match="non-periodic direction"):
        slab = crystal.clone()
        slab.pbc = torch.tensor([[True, True, False]])
        assert_lattice_invariant(model, slab, n=[0, 0, 1])
    with pytest.raises(ValueError, match="`atom`"):
        assert_lattice_invariant(model, crystal, atom=4)
    with pytest.raises(ValueError, match="non-periodic structure"):
        assert_smooth_at_cutoff(model, crystal, 2.5)
    with pytest.raises(ValueError, match="edge_index"):
        assert_smooth_at_cutoff(model, Data(z=mol.z, pos=mol.pos, edge_index=torch.tensor([[0, 1], [1, 0]])), 2.5)
    with pytest.raises(ValueError, match="at least 2 atoms"):
        assert_smooth_at_cutoff(model, Data(z=mol.z[:1], pos=mol.pos[:1]), 2.5)
    with pytest.raises(ValueError, match="no ray"):
        assert_smooth_at_cutoff(model, mol, 2.5, delta=0.5)
    with pytest.raises(ValueError, match="`keys` names outputs"):
        assert_smooth_at_cutoff(model, mol, 2.5, keys=["dipole"])

    def with_edges(data):
        out = model(data)
        edge_index = RadiusInteractionGraph(2.5)(data.pos)[0]
        return {**out, "edge_length": (data.pos[edge_index[0]] - data.pos[edge_index[1]]).norm(dim=-1)}

    assert "edge_length" not in assert_smooth_at_cutoff(with_edges, mol, 2.5)
    with pytest.raises(ValueError, match=r"outputs \['edge_length'\] change shape"):
        assert_smooth_at_cutoff(with_edges, mol, 2.5, keys=["energy", "edge_length"])
    with pytest.raises(ValueError, match="`cutoff`"):
        assert_smooth_at_cutoff(model, mol, float("nan"))
    with pytest.raises(ValueError, match="non-periodic structure"):
        assert_extensive(model, mol, crystal, 2.5)
    with pytest.raises(ValueError, match="different attributes"):
        assert_extensive(model, mol, Data(z=mol.z, pos=mol.pos), 2.5)
