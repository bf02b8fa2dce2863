"""A re-implementation of the original EGNN code's QM9 model (``EGNN`` built from
``E_GCL_mask`` layers on padded, dense batches), used as the speed baseline of
``benchmarks/gpu_speed.py``.

Credit: Victor Garcia Satorras, Emiel Hoogeboom, Max Welling, "E(n) Equivariant Graph
Neural Networks" (ICML 2021), code at https://github.com/vgsatorras/egnn (MIT licence),
``models/gcl.py`` (``E_GCL``, ``unsorted_segment_sum``), ``qm9/models.py`` (``E_GCL_mask``,
``EGNN``), ``qm9/utils.py`` (``get_adj_matrix``, ``preprocess_input``) and
``qm9/data/collate.py`` (the masks). The computation, the parameter layout (``embedding``,
``gcl_%d.edge_mlp`` / ``att_mlp`` / ``node_mlp``, ``node_dec``, ``graph_dec``) and the order
of the operations follow that code with the options of ``main_qm9.py``: ``in_edge_nf=0``
(the only edge input is the squared distance), ``node_attr=0``, ``attention=1``, SiLU.
``E_GCL_mask`` builds a ``coord_mlp`` and deletes it and never updates coordinates, so it
is left out here.

The original runs on padded batches: ``B`` molecules of ``n`` slots (``n`` the largest
molecule of the batch), every one of the ``B n^2`` ordered pairs of slots of a molecule
(self pairs included) is an edge, and ``edge_mask`` (zero on self pairs and on pairs with a
padding slot) multiplies the messages; ``node_mask`` zeroes padding slots before the sum
pooling. The messages of all ``B n^2`` pairs are computed, masked or not.
"""
from __future__ import annotations

import torch
from torch import nn

from .egnn_original import gcl_mlps, unsorted_segment_sum


class E_GCL_mask(nn.Module):
    """One layer of the original QM9 EGNN: ``E_GCL`` without the coordinate update, with
    messages multiplied by ``edge_mask``; ``edge_index = (row, col)``, ``row`` aggregating."""

    def __init__(self, input_nf, output_nf, hidden_nf, edges_in_d=0, act_fn=nn.SiLU(), recurrent=True,
                 attention=False):
        super().__init__()
        self.recurrent = recurrent
        self.attention = attention
        self.edge_mlp, self.node_mlp = gcl_mlps(input_nf, output_nf, hidden_nf, edges_in_d, act_fn)
        if attention:
            self.att_mlp = nn.Sequential(nn.Linear(hidden_nf, 1), nn.Sigmoid())

    def edge_model(self, source, target, radial, edge_attr):
        if edge_attr is None:
            out = torch.cat([source, target, radial], dim=1)
        else:
            out = torch.cat([source, target, radial, edge_attr], dim=1)
        out = self.edge_mlp(out)
        if self.attention:
            out = out * self.att_mlp(out)
        return out

    def node_model(self, x, edge_index, edge_attr):
        row, _ = edge_index
        agg = unsorted_segment_sum(edge_attr, row, num_segments=x.size(0))
        out = self.node_mlp(torch.cat([x, agg], dim=1))
        return x + out if self.recurrent else out

    def coord2radial(self, edge_index, coord):
        row, col = edge_index
        coord_diff = coord[row] - coord[col]
        return torch.sum(coord_diff**2, 1).unsqueeze(1), coord_diff

    def forward(self, h, edge_index, coord, node_mask, edge_mask, edge_attr=None):
        row, col = edge_index
        radial, _ = self.coord2radial(edge_index, coord)
        edge_feat = self.edge_model(h[row], h[col], radial, edge_attr)
        edge_feat = edge_feat * edge_mask
        h = self.node_model(h, edge_index, edge_feat)
        return h, coord, edge_attr


class EGNN(nn.Module):
    """``EGNN(in_node_nf=15, in_edge_nf=0, hidden_nf=128, n_layers=7, attention=True)`` of
    ``main_qm9.py``; ``forward`` takes the flattened padded batch (``h0`` ``[B n, F]``,
    ``x`` ``[B n, 3]``, ``node_mask`` ``[B n, 1]``, ``edge_mask`` ``[B n^2, 1]``, ``edges``
    from :func:`get_adj_matrix`) and returns ``[B]``."""

    def __init__(self, in_node_nf, in_edge_nf, hidden_nf, act_fn=nn.SiLU(), n_layers=4, attention=False):
        super().__init__()
        self.hidden_nf = hidden_nf
        self.n_layers = n_layers
        self.embedding = nn.Linear(in_node_nf, hidden_nf)
        for i in range(n_layers):
            self.add_module(f"gcl_{i}", E_GCL_mask(hidden_nf, hidden_nf, hidden_nf, edges_in_d=in_edge_nf,
                                                   act_fn=act_fn, recurrent=True, attention=attention))
        self.node_dec = nn.Sequential(nn.Linear(hidden_nf, hidden_nf), act_fn, nn.Linear(hidden_nf, hidden_nf))
        self.graph_dec = nn.Sequential(nn.Linear(hidden_nf, hidden_nf), act_fn, nn.Linear(hidden_nf, 1))

    def forward(self, h0, x, edges, edge_attr, node_mask, edge_mask, n_nodes):
        h = self.embedding(h0)
        for i in range(self.n_layers):
            h, _, _ = self._modules[f"gcl_{i}"](h, edges, x, node_mask, edge_mask, edge_attr=edge_attr)
        h = self.node_dec(h)
        h = h * node_mask
        h = h.view(-1, n_nodes, self.hidden_nf)
        h = torch.sum(h, dim=1)
        pred = self.graph_dec(h)
        return pred.squeeze(1)


def get_adj_matrix(n_nodes, batch_size, device=None):
    """``[rows, cols]``: every ordered pair ``(i, j)`` of slots of each molecule, self pairs
    included, row-major as the original's Python loops (vectorised here: the original builds
    these lists on the host for every batch, a cost left out of the comparison)."""
    idx = torch.arange(n_nodes, device=device)
    rows = idx.repeat_interleave(n_nodes)
    cols = idx.repeat(n_nodes)
    offset = (torch.arange(batch_size, device=device) * n_nodes).repeat_interleave(n_nodes * n_nodes)
    return [rows.repeat(batch_size) + offset, cols.repeat(batch_size) + offset]


def masks(atom_mask):
    """``node_mask`` ``[B n, 1]`` and ``edge_mask`` ``[B n^2, 1]`` (float) from the boolean
    ``[B, n]`` atom mask, as ``qm9/data/collate.py`` (self pairs and padding masked)."""
    batch_size, n_nodes = atom_mask.shape
    edge_mask = atom_mask.unsqueeze(1) * atom_mask.unsqueeze(2)
    edge_mask = edge_mask * ~torch.eye(n_nodes, dtype=torch.bool, device=atom_mask.device).unsqueeze(0)
    return (atom_mask.reshape(batch_size * n_nodes, 1).float(),
            edge_mask.reshape(batch_size * n_nodes * n_nodes, 1).float())


def preprocess_input(one_hot, charges, charge_power, charge_scale):
    """Node input: ``one_hot [B, n, S]`` times ``(charges / charge_scale) ** k``, ``k =
    0..charge_power``, flattened to ``[B, n, S (charge_power + 1)]`` (element-major)."""
    charge_tensor = (charges.unsqueeze(-1) / charge_scale).pow(
        torch.arange(charge_power + 1.0, device=charges.device, dtype=torch.float32))
    charge_tensor = charge_tensor.view(charges.shape + (1, charge_power + 1))
    return (one_hot.unsqueeze(-1) * charge_tensor).view(charges.shape[:2] + (-1,))
