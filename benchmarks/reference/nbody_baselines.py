"""The baselines of the EGNN paper's N-body table (Satorras et al. 2021, Table 2), written
with PyG layers after the original code (https://github.com/vgsatorras/egnn,
``n_body_system/model.py`` and ``models/gcl.py``, MIT licence):

- ``LinearDynamics``: ``x + t v`` with one learned scalar ``t`` ("Linear");
- ``GNN``: a non-equivariant message-passing network on ``[x, v]`` node features and
  ``q_i q_j`` edge features that predicts the positions directly ("GNN");
- ``RadialFieldVel``: the radial field of Köhler et al. (2019) with the velocity term
  ("Radial Field").

Each ``forward`` takes the benchmark's batch (``pos``, ``vel``, ``x`` = speed,
``edge_index``, ``edge_attr``) and returns predicted positions ``[N, 3]``.
"""
from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import MessagePassing


class LinearDynamics(nn.Module):
    """``x + t v``; the original initialises ``t = 0.7``."""

    def __init__(self, t: float = 0.7):
        super().__init__()
        self.time = nn.Parameter(torch.tensor([t]))

    def forward(self, data):
        return data.pos + self.time * data.vel


class GCL(MessagePassing):
    """The original ``GCL``: ``m_ij = phi_e([h_i, h_j, a_ij])``, ``h_i + phi_h([h_i, sum_j m_ij])``."""

    def __init__(self, hidden: int, edge_dim: int, act=nn.SiLU()):
        super().__init__(aggr="sum")
        self.edge_mlp = nn.Sequential(nn.Linear(2 * hidden + edge_dim, hidden), act, nn.Linear(hidden, hidden), act)
        self.node_mlp = nn.Sequential(nn.Linear(2 * hidden, hidden), act, nn.Linear(hidden, hidden))

    def forward(self, h, edge_index, edge_attr):
        agg = self.propagate(edge_index, h=h, edge_attr=edge_attr)
        return h + self.node_mlp(torch.cat([h, agg], dim=-1))

    def message(self, h_i, h_j, edge_attr):
        return self.edge_mlp(torch.cat([h_i, h_j, edge_attr], dim=-1))


class GNN(nn.Module):
    """``GNN(input_dim=6, hidden_nf=64, n_layers=4, recurrent=True)`` of ``main_nbody.py``."""

    def __init__(self, hidden: int = 64, num_layers: int = 4, edge_dim: int = 1, act=nn.SiLU()):
        super().__init__()
        self.embedding = nn.Linear(6, hidden)
        self.layers = nn.ModuleList([GCL(hidden, edge_dim, act) for _ in range(num_layers)])
        self.decoder = nn.Sequential(nn.Linear(hidden, hidden), act, nn.Linear(hidden, 3))

    def forward(self, data):
        h = self.embedding(torch.cat([data.pos, data.vel], dim=-1))
        for layer in self.layers:
            h = layer(h, data.edge_index, data.edge_attr[:, :1])
        return self.decoder(h)


class RadialFieldVelLayer(MessagePassing):
    """The original ``GCL_rf_vel``: ``x_i + mean_j (x_i - x_j) phi(|x_i - x_j|, a_ij) +
    v_i phi_v(|v_i|)``."""

    def __init__(self, hidden: int, edge_dim: int, act=nn.SiLU()):
        super().__init__(aggr="mean")
        last = nn.Linear(hidden, 1, bias=False)
        torch.nn.init.xavier_uniform_(last.weight, gain=0.001)
        self.phi = nn.Sequential(nn.Linear(1 + edge_dim, hidden), act, last, nn.Tanh())
        self.coord_mlp_vel = nn.Sequential(nn.Linear(1, hidden), act, nn.Linear(hidden, 1))

    def forward(self, pos, speed, vel, edge_index, edge_attr):
        pos = pos + self.propagate(edge_index, pos=pos, edge_attr=edge_attr)
        return pos + vel * self.coord_mlp_vel(speed)

    def message(self, pos_i, pos_j, edge_attr):
        diff = pos_i - pos_j
        radial = diff.pow(2).sum(-1, keepdim=True).sqrt()
        return diff * self.phi(torch.cat([radial, edge_attr], dim=-1))


class RadialFieldVel(nn.Module):
    """``RF_vel(hidden_nf=64, edge_attr_nf=2, n_layers=4)``: edge input ``[q_i q_j, |x_i -
    x_j|^2]`` of the input frame."""

    def __init__(self, hidden: int = 64, num_layers: int = 4, edge_dim: int = 2, act=nn.SiLU()):
        super().__init__()
        self.layers = nn.ModuleList([RadialFieldVelLayer(hidden, edge_dim, act) for _ in range(num_layers)])

    def forward(self, data):
        pos = data.pos
        for layer in self.layers:
            pos = layer(pos, data.x, data.vel, data.edge_index, data.edge_attr)
        return pos
