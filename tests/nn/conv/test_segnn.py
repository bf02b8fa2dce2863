"""SEGNNConv: the paper's equations on its own sub-layers, E(3) equivariance (open and
periodic graphs), batching, isolated nodes, bad input. Float32 and float64 (conftest)."""
import copy

import pytest
import torch
from e3nn import o3
from torch_geometric.data import Batch, Data

from equigraph.graph import periodic_radius_graph
from equigraph.nn import edge_vec
from equigraph.nn.conv.segnn import SEGNNConv
from equigraph.nn.steerable import SteerableAttributes
from equigraph.testing import assert_batch_consistent, assert_equivariant, default_tolerance

IRREPS, HIDDEN = "3x0e+2x1o", "6x0e+3x1o+2x2e"
ATTRS = SteerableAttributes(lmax=2)


_BUILT = {}


def _conv(**kwargs):
    options = dict(additional_message_irreps="1x0e")
    options.update(kwargs)
    # Building the e3nn tensor products dominates a test's time: build each variant once.
    key = tuple(sorted(options.items()))
    if key not in _BUILT:
        torch.manual_seed(0)
        _BUILT[key] = SEGNNConv(IRREPS, HIDDEN, options.pop("irreps_out", IRREPS), ATTRS.irreps_out,
                                ATTRS.irreps_out, **options)
    return copy.deepcopy(_BUILT[key]).to(torch.get_default_dtype())


def _graph(num_nodes=6, p=0.6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    dtype = torch.get_default_dtype()
    pos = torch.randn(num_nodes, 3, generator=gen).to(dtype)
    mask = torch.rand(num_nodes, num_nodes, generator=gen) < p
    mask = (mask | mask.t()) & ~torch.eye(num_nodes, dtype=torch.bool)
    i, j = mask.nonzero().t()
    x = torch.randn(num_nodes, o3.Irreps(IRREPS).dim, generator=gen).to(dtype)
    return Data(x=x, pos=pos, edge_index=torch.stack([j, i]))


def _inputs(conv, data):
    vec = edge_vec(data.pos, data.edge_index, data.get("shift"), data.get("cell"), data.get("batch"))
    edge_attr, node_attr = ATTRS(vec, data.edge_index, data.num_nodes)
    extra = vec.square().sum(-1, keepdim=True) if conv.additional_message_irreps.dim else None
    return edge_attr, node_attr, extra


def _as_module(conv):
    def run(data):
        edge_attr, node_attr, extra = _inputs(conv, data)
        return conv(data.x, data.edge_index, edge_attr, node_attr, extra, batch=data.get("batch"))

    return run


def _close(actual, expected):
    atol, rtol = default_tolerance(actual.dtype)
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol)


@pytest.mark.parametrize("options", [{}, {"norm": "instance"}, {"additional_message_irreps": None}])
def test_matches_paper_equations(options):
    conv = _conv(**options)
    data = _graph()
    edge_attr, node_attr, extra = _inputs(conv, data)
    out = conv(data.x, data.edge_index, edge_attr, node_attr, extra)

    j, i = data.edge_index  # [0] neighbour j, [1] centre i
    parts = [data.x[i], data.x[j]] + ([extra] if extra is not None else [])
    m = conv.message_layer_2(conv.message_layer_1(torch.cat(parts, 1), edge_attr), edge_attr)
    m_i = torch.zeros(data.num_nodes, m.size(1), dtype=m.dtype).index_add_(0, i, m)
    h = data.x + conv.update_layer_2(conv.update_layer_1(torch.cat([data.x, m_i], 1), node_attr), node_attr)
    if conv.norm == "instance":
        h = conv.feature_norm(h)
    _close(out, h)


@pytest.mark.parametrize("options", [{}, {"norm": "instance"}, {"norm": "batch"},
                                     {"residual": False, "irreps_out": "2x0e+1x1o+1x2e"}])
def test_equivariant(options):
    conv = _conv(**options)
    errors = assert_equivariant(_as_module(conv), _graph(), "E3", in_types={"x": IRREPS, "pos": "point"},
                                out_types=conv.irreps_out)
    assert set(errors) == {"rotation", "reflection", "translation", "permutation"}


def test_periodic_equivariant():
    dtype = torch.get_default_dtype()
    cell = torch.tensor([[[3.0, 0.0, 0.0], [0.4, 2.8, 0.0], [0.3, -0.2, 3.1]]], dtype=dtype)
    pos = torch.tensor([[0.1, 0.2, 0.3], [0.6, 0.5, 0.4], [0.8, 0.1, 0.7]], dtype=dtype) @ cell[0]
    edge_index, shift = periodic_radius_graph(pos, 3.2, cell, torch.tensor([[True, True, True]]))
    assert bool((edge_index[0] == edge_index[1]).any())  # self-images are neighbours
    conv = _conv()
    x = torch.randn(3, o3.Irreps(IRREPS).dim, generator=torch.Generator().manual_seed(0)).to(dtype)
    data = Data(x=x, pos=pos, edge_index=edge_index, shift=shift, cell=cell)
    assert_equivariant(_as_module(conv), data, "E3", in_types={"x": IRREPS, "pos": "point", "cell": "cell"},
                       out_types=conv.irreps_out)


def test_batch_consistent_with_instance_norm():
    conv = _conv(norm="instance")
    graphs = [_graph(n, seed=n) for n in (4, 6, 3)]
    assert_batch_consistent(_as_module(conv), graphs)
    assert_equivariant(_as_module(conv), Batch.from_data_list(graphs), "E3", in_types={"x": IRREPS, "pos": "point"},
                       out_types=conv.irreps_out)


def test_isolated_node_gets_zero_messages():
    conv = _conv()
    data = _graph(5)
    keep = (data.edge_index != 4).all(0)
    data.edge_index = data.edge_index[:, keep]
    edge_attr, node_attr, extra = _inputs(conv, data)
    out = conv(data.x, data.edge_index, edge_attr, node_attr, extra)
    assert torch.equal(node_attr[4], ATTRS(torch.zeros(0, 3), torch.zeros(2, 0, dtype=torch.long), 1)[1][0])
    zero_msg = torch.zeros(1, o3.Irreps(HIDDEN).dim)
    expected = data.x[4:] + conv.update_layer_2(conv.update_layer_1(torch.cat([data.x[4:], zero_msg], 1),
                                                                     node_attr[4:]), node_attr[4:])
    _close(out[4:], expected)
    alone = conv(data.x[4:], torch.zeros(2, 0, dtype=torch.long), edge_attr[:0], node_attr[4:], extra[:0])
    _close(alone, expected)


def test_gradients_finite():
    conv = _conv()
    data = _graph()
    data.pos.requires_grad_(True)
    _as_module(conv)(data).square().sum().backward()
    assert torch.isfinite(data.pos.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in conv.parameters())


def test_reset_parameters_restores_fresh_init():
    torch.manual_seed(5)
    fresh = SEGNNConv(IRREPS, HIDDEN, IRREPS, ATTRS.irreps_out, ATTRS.irreps_out, norm="instance")
    conv = SEGNNConv(IRREPS, HIDDEN, IRREPS, ATTRS.irreps_out, ATTRS.irreps_out, norm="instance")
    with torch.no_grad():
        for p in conv.parameters():
            p.fill_(7.0)
    torch.manual_seed(5)
    conv.reset_parameters()
    for name, value in fresh.state_dict().items():
        assert torch.equal(conv.state_dict()[name], value), name


def test_parameter_layout_and_repr():
    conv = _conv(norm="batch")
    names = {n for n, _ in conv.named_parameters()}
    assert {"message_layer_1.tp.tp.weight", "message_layer_1.tp.bias", "update_layer_2.tp.weight",
            "update_layer_2.bias", "feature_norm.weight", "message_norm.weight"} <= names
    assert conv.message_layer_1.irreps_in == o3.Irreps("3x0e+2x1o+3x0e+2x1o+1x0e")
    assert conv.irreps_in == conv.irreps_out == o3.Irreps(IRREPS)
    assert repr(conv) == ("SEGNNConv(3x0e+2x1o -> 3x0e+2x1o, hidden=6x0e+3x1o+2x2e, edge_attr=1x0e+1x1o+1x2e, "
                          "node_attr=1x0e+1x1o+1x2e, additional_message_irreps=1x0e, norm='batch')")
    assert conv.flow == "source_to_target"


@pytest.mark.parametrize("kwargs, match", [
    ({"irreps_out": "2x0e"}, "residual=True needs irreps_out == irreps_in"),
    ({"norm": "layer"}, "norm"),
    ({"aggr": "mean"}, "aggr"),
    ({"flow": "target_to_source"}, "flow"),
    ({"additional_message_irreps": "1x0q"}, "additional_message_irreps"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _conv(**kwargs)
    with pytest.raises(ValueError, match="irreps_hidden"):
        SEGNNConv(IRREPS, "3x1o+2x0e", IRREPS, ATTRS.irreps_out, ATTRS.irreps_out)  # gate needs scalars first
    with pytest.raises(ValueError, match="irreps_edge_attr is empty"):
        SEGNNConv(IRREPS, HIDDEN, IRREPS, "", ATTRS.irreps_out)


def test_bad_inputs():
    conv = _conv()
    data = _graph()
    edge_attr, node_attr, extra = _inputs(conv, data)
    x, ei = data.x, data.edge_index
    cases = [
        (dict(x=x[:, :-1]), r"x must have shape \[N, 9\]"),
        (dict(x=x[:0], node_attr=node_attr[:0]), "empty"),
        (dict(edge_index=ei.float()), "edge_index must be an integer"),
        (dict(edge_index=ei + 10), "edge_index refers to node"),
        (dict(edge_attr=edge_attr[:, :4]), "edge_attr must have shape"),
        (dict(node_attr=node_attr[:-1]), "node_attr must have shape"),
        (dict(extra=None), "additional_message_features is missing"),
        (dict(extra=torch.cat([extra, extra], 1)), "additional_message_features must have shape"),
        (dict(batch=torch.zeros(2, dtype=torch.long)), "batch must have shape"),
    ]
    for override, match in cases:
        args = dict(x=x, edge_index=ei, edge_attr=edge_attr, node_attr=node_attr, extra=extra, batch=None)
        args.update(override)
        with pytest.raises(ValueError, match=match):
            conv(args["x"], args["edge_index"], args["edge_attr"], args["node_attr"], args["extra"], args["batch"])
    plain = _conv(additional_message_irreps=None)
    with pytest.raises(ValueError, match="built without additional_message_irreps"):
        plain(x, ei, edge_attr, node_attr, extra)


def test_edge_weight_scales_messages_before_the_sum():
    conv = _conv()
    data = _graph()
    edge_attr, node_attr, extra = _inputs(conv, data)
    x, ei = data.x, data.edge_index
    e = ei.size(1)
    plain = conv(x, ei, edge_attr, node_attr, extra)
    # [E] and [E, 1] are the same weights; weight 1 is no weight, weight 0 removes the edge.
    _close(conv(x, ei, edge_attr, node_attr, extra, edge_weight=torch.ones(e)), plain)
    keep = torch.arange(e) % 2 == 0
    _close(conv(x, ei, edge_attr, node_attr, extra, edge_weight=keep.to(x.dtype).unsqueeze(-1)),
           conv(x, ei[:, keep], edge_attr[keep], node_attr, extra[keep]))
    # Messages are summed after weighting: m_i = sum_j w_ij m_ij.
    w = torch.rand(e, generator=torch.Generator().manual_seed(3)).to(x.dtype)
    messages = conv.message(x[ei[1]], x[ei[0]], edge_attr, extra, None) * w.unsqueeze(-1)
    msg = torch.zeros(x.size(0), messages.size(1), dtype=x.dtype).index_add_(0, ei[1], messages)
    expected = x + conv.update_layer_2(conv.update_layer_1(torch.cat([x, msg], -1), node_attr), node_attr)
    _close(conv(x, ei, edge_attr, node_attr, extra, edge_weight=w), expected)
    with pytest.raises(ValueError, match=r"edge_weight must have shape \[E=\d+\]"):
        conv(x, ei, edge_attr, node_attr, extra, edge_weight=torch.ones(e + 1))


def test_validate_false_skips_the_input_checks(monkeypatch):
    checked = _conv()
    unchecked = _conv(validate=False)
    data = _graph()
    edge_attr, node_attr, extra = _inputs(checked, data)
    args = (data.x, data.edge_index, edge_attr, node_attr, extra)
    expected = checked(*args)

    def fail(*_, **__):
        raise AssertionError("_check_inputs called")

    monkeypatch.setattr(unchecked, "_check_inputs", fail)
    assert torch.equal(unchecked(*args), expected)
    monkeypatch.setattr(checked, "_check_inputs", fail)
    with pytest.raises(AssertionError, match="_check_inputs called"):
        checked(*args)
    with pytest.raises(ValueError, match="tp_backend must be one of"):
        _conv(tp_backend="jax")
