"""A re-implementation of the original EGNN code's N-body model (``EGNN_vel`` built from
``E_GCL_vel`` layers with ``unsorted_segment_sum``/``unsorted_segment_mean``), used as the
speed baseline of ``benchmarks/nbody.py``.

Credit: Victor Garcia Satorras, Emiel Hoogeboom, Max Welling, "E(n) Equivariant Graph
Neural Networks" (ICML 2021), code at https://github.com/vgsatorras/egnn (MIT licence),
``models/gcl.py`` and ``n_body_system/model.py``. The computation, the layout of the
parameters (``edge_mlp``, ``node_mlp``, ``coord_mlp``, ``coord_mlp_vel``) and the order of
the operations follow that code; unused options (attention, tanh, ...) are left out.
"""
from __future__ import annotations

import torch
from torch import nn


def unsorted_segment_sum(data, segment_ids, num_segments):
    result = data.new_zeros((num_segments, data.size(1)))
    result.scatter_add_(0, segment_ids.unsqueeze(-1).expand(-1, data.size(1)), data)
    return result


def unsorted_segment_mean(data, segment_ids, num_segments):
    ids = segment_ids.unsqueeze(-1).expand(-1, data.size(1))
    result = data.new_zeros((num_segments, data.size(1)))
    count = data.new_zeros((num_segments, data.size(1)))
    result.scatter_add_(0, ids, data)
    count.scatter_add_(0, ids, torch.ones_like(data))
    return result / count.clamp(min=1)


def gcl_mlps(input_nf, output_nf, hidden_nf, edges_in_d, act_fn):
    """``(edge_mlp, node_mlp)`` of the original ``E_GCL``, shared by its variants."""
    edge_mlp = nn.Sequential(nn.Linear(2 * input_nf + 1 + edges_in_d, hidden_nf), act_fn,
                             nn.Linear(hidden_nf, hidden_nf), act_fn)
    node_mlp = nn.Sequential(nn.Linear(hidden_nf + input_nf, hidden_nf), act_fn, nn.Linear(hidden_nf, output_nf))
    return edge_mlp, node_mlp


class E_GCL_vel(nn.Module):
    """One EGNN-vel layer; ``edge_index = (row, col)`` with ``row`` the aggregating node."""

    def __init__(self, input_nf, output_nf, hidden_nf, edges_in_d=0, act_fn=nn.SiLU(), recurrent=True,
                 coords_weight=1.0):
        super().__init__()
        self.coords_weight = coords_weight
        self.recurrent = recurrent
        self.edge_mlp, self.node_mlp = gcl_mlps(input_nf, output_nf, hidden_nf, edges_in_d, act_fn)
        layer = nn.Linear(hidden_nf, 1, bias=False)
        torch.nn.init.xavier_uniform_(layer.weight, gain=0.001)
        self.coord_mlp = nn.Sequential(nn.Linear(hidden_nf, hidden_nf), act_fn, layer)
        self.coord_mlp_vel = nn.Sequential(nn.Linear(input_nf, hidden_nf), act_fn, nn.Linear(hidden_nf, 1))

    def edge_model(self, source, target, radial, edge_attr):
        return self.edge_mlp(torch.cat([source, target, radial, edge_attr], dim=1))

    def node_model(self, x, edge_index, edge_attr):
        row, _ = edge_index
        agg = unsorted_segment_sum(edge_attr, row, num_segments=x.size(0))
        out = self.node_mlp(torch.cat([x, agg], dim=1))
        return x + out if self.recurrent else out

    def coord_model(self, coord, edge_index, coord_diff, edge_feat):
        row, _ = edge_index
        trans = coord_diff * self.coord_mlp(edge_feat)
        trans = torch.clamp(trans, min=-100, max=100)
        agg = unsorted_segment_mean(trans, row, num_segments=coord.size(0))
        return coord + agg * self.coords_weight

    def forward(self, h, edge_index, coord, vel, edge_attr):
        row, col = edge_index
        coord_diff = coord[row] - coord[col]
        radial = torch.sum(coord_diff**2, 1).unsqueeze(1)
        edge_feat = self.edge_model(h[row], h[col], radial, edge_attr)
        coord = self.coord_model(coord, edge_index, coord_diff, edge_feat)
        coord = coord + self.coord_mlp_vel(h) * vel
        h = self.node_model(h, edge_index, edge_feat)
        return h, coord


class EGNN_vel(nn.Module):
    """``EGNN_vel(in_node_nf=1, in_edge_nf=2, hidden_nf=64, n_layers=4, recurrent=True)`` of
    ``main_nbody.py``: node input the speed, edge input ``[q_i q_j, |x_i - x_j|^2]``."""

    def __init__(self, in_node_nf, in_edge_nf, hidden_nf, act_fn=nn.SiLU(), n_layers=4, recurrent=True):
        super().__init__()
        self.n_layers = n_layers
        self.embedding = nn.Linear(in_node_nf, hidden_nf)
        self.layers = nn.ModuleList([
            E_GCL_vel(hidden_nf, hidden_nf, hidden_nf, edges_in_d=in_edge_nf, act_fn=act_fn, recurrent=recurrent)
            for _ in range(n_layers)
        ])

    def forward(self, h, x, edges, vel, edge_attr):
        h = self.embedding(h)
        for layer in self.layers:
            h, x = layer(h, edges, x, vel, edge_attr)
        return x
