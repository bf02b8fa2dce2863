import warnings

import pytest
import torch
from torch_geometric.data import Batch, Data

from equigraph.models.contract import Output
from equigraph.nn.backbones import FALocalPointNet
from equigraph.nn.frames import DegenerateFrameWarning
from equigraph.testing import assert_batch_consistent, assert_equivariant


def _graphs():
    gen = torch.Generator().manual_seed(0)
    return [Data(pos=torch.randn(n, 3, generator=gen, dtype=torch.float64).to(torch.get_default_dtype()),
                 x=torch.randn(n, 2, generator=gen, dtype=torch.float64).to(torch.get_default_dtype()))
            for n in (8, 11)]


def _model(**kwargs):
    torch.manual_seed(0)
    return FALocalPointNet(**{"k": 5, "in_channels": 2, "hidden_channels": 8, "global_channels": 16, **kwargs})


@pytest.mark.parametrize("out_type", ["vector", "pseudovector", "point", "scalar", "1o+2e"])
def test_equivariant_by_local_frames(out_type):
    model = _model(out_type=out_type)
    data = Batch.from_data_list(_graphs())
    assert model.outputs == {"y": Output(out_type, "node")}
    assert_equivariant(model, data, out_types={"y": out_type})


def test_rotation_only_frames_are_not_reflection_equivariant():
    model = _model(group="SE3")
    data = _graphs()[0]
    assert_equivariant(model, data, "SE3", out_types={"y": "vector"})
    with pytest.raises(AssertionError, match="fails the reflection check"):
        assert_equivariant(model, data, "E3", out_types={"y": "vector"})


def test_graph_level_scalar_and_batch_consistency(dtype):
    model = _model(out_type="scalar", level="graph", out_channels=2)
    assert model(Batch.from_data_list(_graphs()))["y"].shape == (2, 2)
    assert_batch_consistent(_model(), _graphs())


def test_degenerate_neighbourhoods_are_counted():
    model = _model(in_channels=0, k=4)
    # each corner of a cube with its 3 nearest corners: a symmetric top, lambda_2 = lambda_3 > 0
    cube = torch.tensor([[x, y, z] for x in (0.0, 1.0) for y in (0.0, 1.0) for z in (0.0, 1.0)])
    with pytest.warns(DegenerateFrameWarning, match="8 of 8 points"):
        out = model(Data(pos=cube))["y"]
    assert torch.isfinite(out).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(Data(pos=cube))
    assert model.num_degenerate == 16


def test_collinear_neighbourhoods_are_exact():
    model = _model(in_channels=0, k=4)
    line = Data(pos=torch.linspace(0, 1, 8).unsqueeze(1) * torch.tensor([1.0, 2.0, 3.0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_equivariant(model, line, out_types={"y": "vector"})


@pytest.mark.parametrize("kwargs, match", [
    ({"k": 2}, "k must be at least 3"),
    ({"level": "graph"}, "per-cloud outputs pool invariant features, so they must be 'scalar'"),
    ({"group": "E2"}, "`group` must be one of"),
    ({"tol": -1.0}, "`tol` must be a finite number"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _model(**kwargs)
