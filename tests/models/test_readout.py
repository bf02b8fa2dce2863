"""Readout: pooling semantics (sum, mean, node level), any batch order, empty trailing
graphs, the optional post-pooling MLP, bad input."""
import pytest
import torch

from equigraph.models import Readout


def _atol():
    return 1e-5 if torch.get_default_dtype() == torch.float32 else 1e-12


@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_pooling_matches_manual(reduce):
    torch.manual_seed(0)
    readout = Readout(6, 2, hidden_channels=5, reduce=reduce)
    h = torch.randn(7, 6)
    batch = torch.tensor([1, 0, 1, 2, 0, 2, 2])  # unsorted
    out = readout(h, batch)
    node = readout.node_net(h)
    for g in range(3):
        part = node[batch == g]
        expected = part.sum(0) if reduce == "sum" else part.mean(0)
        torch.testing.assert_close(out[g], expected, atol=_atol(), rtol=0)
    assert out.shape == (3, 2)


def test_sum_is_extensive_and_mean_intensive():
    torch.manual_seed(0)
    h = torch.randn(3, 4)
    twice = torch.cat([h, h])
    summed = Readout(4, 1, reduce="sum")
    meaned = Readout(4, 1, reduce="mean")
    torch.testing.assert_close(summed(twice), 2 * summed(h), atol=_atol(), rtol=0)
    torch.testing.assert_close(meaned(twice), meaned(h), atol=_atol(), rtol=0)


def test_node_level_and_graph_mlp():
    torch.manual_seed(0)
    h = torch.randn(5, 4)
    node = Readout(4, 3, reduce=None)
    assert node(h).shape == (5, 3) and node.graph_net is None
    head = Readout(4, 1, hidden_channels=8, reduce="sum", graph_mlp=True)
    batch = torch.tensor([0, 0, 1, 1, 1])
    pooled = torch.stack([head.node_net(h)[:2].sum(0), head.node_net(h)[2:].sum(0)])
    torch.testing.assert_close(head(h, batch), head.graph_net(pooled), atol=_atol(), rtol=0)
    assert repr(head) == "Readout(4, 1, hidden_channels=8, reduce='sum', graph_mlp=True)"


def test_num_graphs_keeps_empty_trailing_graphs():
    readout = Readout(4, 1, reduce="sum")
    out = readout(torch.randn(2, 4), torch.tensor([0, 0]), num_graphs=3)
    assert out.shape == (3, 1) and torch.equal(out[1:], torch.zeros(2, 1))


def test_reset_parameters_is_reproducible():
    torch.manual_seed(1)
    fresh = Readout(4, 2, graph_mlp=True)
    readout = Readout(4, 2, graph_mlp=True)
    torch.manual_seed(1)
    readout.reset_parameters()
    for name, value in fresh.state_dict().items():
        assert torch.equal(readout.state_dict()[name], value), name


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda r: r(torch.randn(3, 5)), "h must have shape"),
        (lambda r: r(torch.randn(0, 4)), "empty"),
        (lambda r: r(torch.randn(3, 4), torch.tensor([0, 1])), "batch must have shape"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call(Readout(4, 1))


@pytest.mark.parametrize(
    "kwargs, match",
    [({"reduce": "max"}, "reduce"), ({"out_channels": 0}, "out_channels"), ({"hidden_channels": -1}, "hidden_channels")],
)
def test_bad_constructor_arguments(kwargs, match):
    args = {"in_channels": 4, "out_channels": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        Readout(**args)
