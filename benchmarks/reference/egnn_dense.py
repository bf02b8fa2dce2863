"""A dense all-pairs EGNN-vel without PyG: every tensor is ``[B, N, N, ...]`` over the
``B`` systems of a batch of equal-size, fully connected graphs (the N-body case), so that
gathers and scatters become broadcasting and sums. Speed baseline of
``benchmarks/nbody.py``; parameters are laid out as in
:mod:`benchmarks.reference.egnn_original` so that the same weights load into both.
"""
from __future__ import annotations

import torch
from torch import nn


class DenseEGCLVel(nn.Module):
    def __init__(self, hidden_nf, edges_in_d=0, act_fn=nn.SiLU()):
        super().__init__()
        self.hidden_nf = hidden_nf
        self.edge_mlp = nn.Sequential(nn.Linear(2 * hidden_nf + 1 + edges_in_d, hidden_nf), act_fn,
                                      nn.Linear(hidden_nf, hidden_nf), act_fn)
        self.node_mlp = nn.Sequential(nn.Linear(2 * hidden_nf, hidden_nf), act_fn, nn.Linear(hidden_nf, hidden_nf))
        layer = nn.Linear(hidden_nf, 1, bias=False)
        torch.nn.init.xavier_uniform_(layer.weight, gain=0.001)
        self.coord_mlp = nn.Sequential(nn.Linear(hidden_nf, hidden_nf), act_fn, layer)
        self.coord_mlp_vel = nn.Sequential(nn.Linear(hidden_nf, hidden_nf), act_fn, nn.Linear(hidden_nf, 1))

    def forward(self, h, x, vel, edge_attr, mask):
        """``h`` ``[B, N, F]``, ``x``/``vel`` ``[B, N, 3]``, ``edge_attr`` ``[B, N, N, D]``
        (entry ``[b, i, j]`` for the pair centre ``i``, neighbour ``j``), ``mask`` ``[N, N]``
        float, 0 on the diagonal."""
        f = self.hidden_nf
        first = self.edge_mlp[0]
        diff = x[:, :, None, :] - x[:, None, :, :]
        radial = diff.pow(2).sum(-1, keepdim=True)
        # The node blocks of the first Linear, once per node, broadcast over pairs.
        hi = h @ first.weight[:, :f].t()
        hj = h @ first.weight[:, f:2 * f].t()
        geo = torch.cat([radial, edge_attr], dim=-1)
        m = hi[:, :, None, :] + hj[:, None, :, :] + nn.functional.linear(geo, first.weight[:, 2 * f:], first.bias)
        m = self.edge_mlp[1:](m) * mask[..., None]
        trans = (diff * self.coord_mlp(m)).clamp(-100, 100)
        x = x + (trans * mask[..., None]).sum(2) / mask.sum(1)[:, None].clamp(min=1)
        x = x + self.coord_mlp_vel(h) * vel
        h = h + self.node_mlp(torch.cat([h, m.sum(2)], dim=-1))
        return h, x


class DenseEGNNVel(nn.Module):
    def __init__(self, in_node_nf, in_edge_nf, hidden_nf, act_fn=nn.SiLU(), n_layers=4):
        super().__init__()
        self.embedding = nn.Linear(in_node_nf, hidden_nf)
        self.layers = nn.ModuleList([DenseEGCLVel(hidden_nf, in_edge_nf, act_fn) for _ in range(n_layers)])

    def forward(self, h, x, vel, edge_attr):
        n = x.size(1)
        mask = 1.0 - torch.eye(n, dtype=x.dtype, device=x.device)
        h = self.embedding(h)
        for layer in self.layers:
            h, x = layer(h, x, vel, edge_attr, mask)
        return x
