import pytest
import torch
from torch_geometric.data import Batch, Data

from equigraph.models.contract import Output
from equigraph.nn.backbones import PointNet
from equigraph.testing import assert_batch_consistent


def _graphs(in_channels=0):
    gen = torch.Generator().manual_seed(0)
    out = []
    for n in (6, 9):
        d = Data(pos=torch.randn(n, 3, generator=gen, dtype=torch.float64).to(torch.get_default_dtype()))
        if in_channels:
            d.x = torch.randn(n, in_channels)
        out.append(d)
    return out


@pytest.mark.parametrize("level, out_type, channels, shape", [
    ("graph", "scalar", 4, (2, 4)),
    ("node", "vector", None, (15, 3)),
    ("node", "2x0e+1o", None, (15, 5)),
    ("graph", "pseudoscalar", None, (2, 1)),
])
def test_shapes_and_declaration(level, out_type, channels, shape, dtype):
    model = PointNet(out_channels=channels, out_type=out_type, level=level, in_channels=2, hidden_channels=8,
                     global_channels=16)
    out = model(Batch.from_data_list(_graphs(2)))
    assert out["y"].shape == shape and out["y"].dtype == dtype
    assert model.outputs == {"y": Output(out_type, level)}
    assert "PointNet(" in repr(model)


def test_batch_consistent():
    model = PointNet(out_type="vector", level="node", hidden_channels=8, global_channels=16)
    assert_batch_consistent(model, _graphs())


def test_reset_parameters_is_deterministic():
    torch.manual_seed(1)
    a = PointNet(hidden_channels=8, global_channels=16)
    torch.manual_seed(1)
    a.reset_parameters()
    torch.manual_seed(1)
    b = PointNet(hidden_channels=8, global_channels=16)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("kwargs, match", [
    ({"out_type": "vector", "out_channels": 4}, "declared vector has 3 channels, got out_channels=4"),
    ({"out_type": "1o+0e", "out_channels": 3}, r"declared 1x1o\+1x0e has 4 channels"),
    ({"out_type": "cell"}, "out_type 'cell' is not supported"),
    ({"out_type": "tensor"}, "out_type 'tensor' is not supported"),
    ({"out_type": "spinor"}, "neither one of"),
    ({"level": "edge"}, "level must be one of"),
    ({"out_channels": 0}, "out_channels must be a positive int"),
    ({"in_channels": -1}, "in_channels must be an int >= 0"),
    ({"hidden_channels": 0}, "hidden_channels must be a positive int"),
    ({"global_channels": 0}, "PointNet: global_channels must be a positive int, got 0"),
    ({"num_layers": True}, "PointNet: num_layers must be a positive int, got True"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PointNet(**kwargs)


def test_bad_inputs():
    model = PointNet(in_channels=2, hidden_channels=8, global_channels=8)
    with pytest.raises(ValueError, match=r"PointNet: data.x is missing \(built with in_channels=2\)"):
        model(Data(pos=torch.randn(4, 3)))
    with pytest.raises(ValueError, match=r"data.x must have shape \[N=4, in_channels=2\], got \[4, 3\]"):
        model(Data(pos=torch.randn(4, 3), x=torch.randn(4, 3)))
    with pytest.raises(ValueError, match=r"data.pos must be a float \[N, 3\] tensor, got \[4, 2\]"):
        model(Data(pos=torch.randn(4, 2), x=torch.randn(4, 2)))
    with pytest.raises(ValueError, match="data.pos contains NaN or inf"):
        model(Data(pos=torch.full((4, 3), float("nan")), x=torch.randn(4, 2)))
    with pytest.raises(ValueError, match="data.pos is empty"):
        model(Data(pos=torch.zeros(0, 3), x=torch.zeros(0, 2)))
