"""Spherical-harmonic edge attributes and their per-node mean."""
import math

import pytest
import torch
from e3nn import o3
from torch_geometric.data import Data

from equigraph.graph import periodic_radius_graph
from equigraph.nn import edge_vec
from equigraph.nn.steerable import SteerableAttributes, edge_attributes, node_attributes
from equigraph.testing import assert_equivariant, default_tolerance


def _graph(num_nodes=6, p=0.6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    pos = torch.randn(num_nodes, 3, generator=gen).to(torch.get_default_dtype())
    mask = torch.rand(num_nodes, num_nodes, generator=gen) < p
    mask = (mask | mask.t()) & ~torch.eye(num_nodes, dtype=torch.bool)
    i, j = mask.nonzero().t()
    return pos, torch.stack([j, i])


def _close(actual, expected):
    atol, rtol = default_tolerance(actual.dtype)
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol)


@pytest.mark.parametrize("normalization", ["component", "integral", "norm"])
def test_edge_attributes_are_e3nn_harmonics(normalization):
    vec = torch.randn(10, 3) * 3
    expected = o3.spherical_harmonics(o3.Irreps.spherical_harmonics(3), vec, normalize=True,
                                      normalization=normalization)
    _close(edge_attributes(vec, 3, normalization), expected)


def test_node_attributes_mean_over_centre_edges_and_isolated_nodes():
    pos, edge_index = _graph(6)
    keep = (edge_index[1] != 4) & (edge_index[0] != 4)  # node 4 has no edges at all
    edge_index = edge_index[:, keep]
    pos[5] = 100.0  # far away changes nothing: attributes depend only on directions
    attrs = SteerableAttributes(lmax=2)
    edge_attr, node_attr = attrs(edge_vec(pos, edge_index), edge_index, num_nodes=6)
    for i in range(6):
        rows = edge_attr[edge_index[1] == i]
        if rows.numel():
            _close(node_attr[i], rows.mean(0))
    trivial = torch.zeros(9)
    trivial[0] = 1.0
    assert torch.equal(node_attr[4], trivial)
    assert torch.allclose(node_attr[:, 0], torch.ones(6))  # "component": 0e part is 1 for every node


def test_isolated_node_integral_normalization_gets_y0():
    a = edge_attributes(torch.tensor([[0.0, 1.0, 0.0]]), 1, "integral")
    node_attr = node_attributes(a, torch.tensor([[1], [0]]), num_nodes=3, normalization="integral")
    y0 = 1 / math.sqrt(4 * math.pi)
    _close(node_attr[1], torch.tensor([y0, 0.0, 0.0, 0.0]))
    _close(node_attr[0], a[0])


def test_equivariant_open_graph():
    pos, edge_index = _graph(7)
    attrs = SteerableAttributes(lmax=3)

    def run(data):
        edge_attr, node_attr = attrs(edge_vec(data.pos, data.edge_index), data.edge_index, data.num_nodes)
        return {"edge_attr": edge_attr, "node_attr": node_attr}

    irreps = attrs.irreps_out
    assert_equivariant(run, Data(pos=pos, edge_index=edge_index), "E3",
                       out_types={"edge_attr": irreps, "node_attr": irreps}, edge_outputs=["edge_attr"])


def test_equivariant_periodic_graph():
    dtype = torch.get_default_dtype()
    cell = torch.tensor([[[3.0, 0.0, 0.0], [0.4, 2.8, 0.0], [0.3, -0.2, 3.1]]], dtype=dtype)
    pos = torch.tensor([[0.1, 0.2, 0.3], [0.6, 0.5, 0.4], [0.8, 0.1, 0.7]], dtype=dtype) @ cell[0]
    edge_index, shift = periodic_radius_graph(pos, 3.2, cell, torch.tensor([[True, True, True]]))
    attrs = SteerableAttributes(lmax=2)

    def run(data):
        vec = edge_vec(data.pos, data.edge_index, data.shift, data.cell)
        edge_attr, node_attr = attrs(vec, data.edge_index, data.num_nodes)
        return {"edge_attr": edge_attr, "node_attr": node_attr}

    irreps = attrs.irreps_out
    data = Data(pos=pos, edge_index=edge_index, shift=shift, cell=cell)
    assert_equivariant(run, data, "E3", out_types={"edge_attr": irreps, "node_attr": irreps},
                       edge_outputs=["edge_attr"])


def test_zero_length_edge_is_named():
    pos = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    edge_index = torch.tensor([[1, 0, 2, 1], [0, 1, 1, 2]])
    vec = edge_vec(pos, edge_index)
    with pytest.raises(ValueError, match=r"edge 2 \(neighbour j=2 -> centre i=1\) has zero length.*2 such edges"):
        SteerableAttributes(lmax=1)(vec, edge_index, 3)
    with pytest.raises(ValueError, match="edge 2 .*zero length"):
        edge_attributes(vec, 1, edge_index=edge_index)
    with pytest.raises(ValueError, match="edge 2 has zero length"):
        edge_attributes(vec, 1)


def test_zero_length_edge_allowed_gets_trivial_attribute_and_finite_gradient():
    pos = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], requires_grad=True)
    edge_index = torch.tensor([[1, 0, 2, 1], [0, 1, 1, 2]])
    attrs = SteerableAttributes(lmax=2, allow_zero_length=True)
    edge_attr, node_attr = attrs(edge_vec(pos, edge_index), edge_index, 3)
    trivial = torch.zeros(9)
    trivial[0] = 1.0
    assert torch.equal(edge_attr[2].detach(), trivial)
    (edge_attr.square().sum() + node_attr.sum()).backward()
    assert torch.isfinite(pos.grad).all()


@pytest.mark.parametrize("kwargs, match", [
    (dict(lmax=-1), "lmax"),
    (dict(lmax=1.0), "lmax"),
    (dict(lmax=1, normalization="unit"), "normalization"),
    (dict(lmax=1, eps=0.0), "eps"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SteerableAttributes(**kwargs)


def test_bad_inputs():
    attrs = SteerableAttributes(lmax=1)
    with pytest.raises(ValueError, match=r"vec must be an \[E, 3\]"):
        attrs(torch.zeros(4, 2), torch.zeros(2, 4, dtype=torch.long), 3)
    with pytest.raises(ValueError, match=r"vec must be an \[E, 3\]"):
        edge_attributes(torch.zeros(3), 1)
    a = edge_attributes(torch.randn(4, 3), 1)
    with pytest.raises(ValueError, match=r"edge_attr must have shape \[E, 9\]"):
        node_attributes(a, torch.zeros(2, 4, dtype=torch.long), 3, lmax=2)
    with pytest.raises(ValueError, match="edge_index must have shape"):
        node_attributes(a, torch.zeros(2, 3, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="num_nodes"):
        node_attributes(a, torch.zeros(2, 4, dtype=torch.long), -1)
    with pytest.raises(ValueError, match="normalization"):
        node_attributes(a, torch.zeros(2, 4, dtype=torch.long), 3, normalization="x")


def test_repr_and_irreps():
    attrs = SteerableAttributes(lmax=2, normalization="integral")
    assert attrs.irreps_in == o3.Irreps("1x1o") and attrs.irreps_out == o3.Irreps("1x0e+1x1o+1x2e")
    assert repr(attrs) == "SteerableAttributes(lmax=2, normalization='integral')"
