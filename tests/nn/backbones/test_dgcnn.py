import pytest
import torch
from torch_geometric.data import Batch, Data

from equigraph.models.contract import Output
from equigraph.nn.backbones import DGCNN
from equigraph.testing import assert_batch_consistent


def _graphs():
    gen = torch.Generator().manual_seed(0)
    return [Data(pos=torch.randn(n, 3, generator=gen, dtype=torch.float64).to(torch.get_default_dtype()),
                 x=torch.randn(n, 1, generator=gen, dtype=torch.float64).to(torch.get_default_dtype()))
            for n in (7, 10)]


@pytest.mark.parametrize("dynamic", [True, False])
@pytest.mark.parametrize("level, shape", [("graph", (2, 3)), ("node", (17, 3))])
def test_shapes_and_declaration(level, shape, dynamic, dtype):
    model = DGCNN(out_type="vector", level=level, in_channels=1, hidden_channels=8, global_channels=16,
                  num_layers=2, k=4, dynamic=dynamic)
    out = model(Batch.from_data_list(_graphs()))
    assert out["y"].shape == shape and out["y"].dtype == dtype
    assert model.outputs == {"y": Output("vector", level)}


def test_dynamic_graph_changes_the_result():
    torch.manual_seed(0)
    a = DGCNN(out_channels=2, hidden_channels=8, global_channels=16, num_layers=3, k=3, dynamic=True)
    b = DGCNN(out_channels=2, hidden_channels=8, global_channels=16, num_layers=3, k=3, dynamic=False)
    b.load_state_dict(a.state_dict())
    data = Batch.from_data_list(_graphs())
    assert not torch.allclose(a(data)["y"], b(data)["y"])


def test_batch_consistent():
    model = DGCNN(out_type="vector", level="node", in_channels=1, hidden_channels=8, global_channels=16,
                  num_layers=2, k=4)
    assert_batch_consistent(model, _graphs())


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="DGCNN: k must be a positive int"):
        DGCNN(k=0)
    with pytest.raises(ValueError, match="DGCNN: global_channels must be a positive int, got 0"):
        DGCNN(global_channels=0)
    with pytest.raises(ValueError, match="graph 0 has 7"):
        DGCNN(k=8, in_channels=1)(Batch.from_data_list(_graphs()))
