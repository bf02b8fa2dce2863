"""A re-implementation of the original SEGNN code (``O3TensorProduct``,
``O3TensorProductSwishGate``, ``InstanceNorm``, ``SEGNNLayer`` and the ``SEGNN`` model),
used as the speed and equality baseline of ``benchmarks/steerable_speed.py``.

Credit: Johannes Brandstetter, Rob Hesselink, Elise van der Pol, Erik Bekkers, Max
Welling, "Geometric and Physical Quantities Improve E(3) Equivariant Message Passing"
(ICLR 2022, https://arxiv.org/abs/2110.02905), code at
https://github.com/RobDHess/Steerable-E3-GNN (MIT licence), ``models/segnn/segnn.py``,
``models/segnn/o3_building_blocks.py`` and ``models/segnn/instance_norm.py``. The
computation follows that code operation by operation: e3nn's
``FullyConnectedTensorProduct`` (``"component"`` normalization, fan-in path
normalization), its output divided by :math:`1/\\sqrt{\\mathrm{fan\\_in}}` per output
irrep (``tp_rescale``), a bias on every ``l = 0`` output written in place, e3nn's ``Gate``
with the first output irrep as the scalars (a plain SiLU when there is nothing to gate),
PyG ``MessagePassing`` with ``node_dim=-2`` and ``aggr="add"``, and the residual update
``x += update``. Behaviours kept on purpose: the bias also lands on odd scalars (``0o``),
and the model overwrites the ``0e`` node attribute with 1 (``catch_isolated_nodes``).
Unused options (SEConv, the ``max`` instance-norm reduction) are left out.
"""
from __future__ import annotations

from math import sqrt

import torch
from e3nn.nn import BatchNorm, Gate
from e3nn.o3 import FullyConnectedTensorProduct, Irreps
from torch import nn
from torch_geometric.nn import MessagePassing, global_add_pool, global_mean_pool
from torch_geometric.utils import scatter


class O3TensorProduct(nn.Module):
    """Bilinear layer ``tp(x1, x2) / sqrt_k + bias``, weights ~ U(-sqrt_k, sqrt_k) with
    ``sqrt_k = 1 / sqrt(fan_in)`` of each output irrep (like ``torch.nn.Linear``)."""

    def __init__(self, irreps_in1, irreps_out, irreps_in2=None, tp_rescale=True):
        super().__init__()
        self.irreps_in1 = Irreps(irreps_in1)
        self.irreps_out = Irreps(irreps_out)
        self.irreps_in2 = Irreps("1x0e") if irreps_in2 is None else Irreps(irreps_in2)
        self.tp_rescale = tp_rescale
        self.tp = FullyConnectedTensorProduct(self.irreps_in1, self.irreps_in2, self.irreps_out,
                                              shared_weights=True, normalization="component")
        slices = self.irreps_out.slices()
        scalar_entries = [i for i, (_, ir) in enumerate(self.irreps_out) if ir.l == 0]

        fan_in = {}
        for ins in self.tp.instructions:
            mul_1, mul_2, _ = ins.path_shape
            fan_in[ins.i_out] = fan_in.get(ins.i_out, 0) + mul_1 * mul_2
        sqrt_k = {i: (1 / sqrt(n) if tp_rescale else 1.0) for i, n in fan_in.items()}
        with torch.no_grad():
            for weight, ins in zip(self.tp.weight_views(), self.tp.instructions):
                weight.uniform_(-sqrt_k[ins.i_out], sqrt_k[ins.i_out])
            biases = [torch.empty(self.irreps_out[i].mul).uniform_(-1 / sqrt(fan_in[i]), 1 / sqrt(fan_in[i]))
                      for i in scalar_entries]
        if biases:
            self.biases = nn.Parameter(torch.cat(biases))
            idx = torch.cat([torch.arange(slices[i].start, slices[i].stop) for i in scalar_entries])
            self.register_buffer("bias_idx", idx, persistent=False)
        else:
            self.biases = None
        # An output irrep that no path reaches keeps a correction of 0 (as the original).
        correction = torch.zeros(self.irreps_out.dim)
        for i, k in sqrt_k.items():
            correction[slices[i]] = k
        self.register_buffer("sqrt_k_correction", correction, persistent=False)

    def forward_tp_rescale_bias(self, data_in1, data_in2=None):
        if data_in2 is None:
            data_in2 = torch.ones_like(data_in1[:, 0:1])
        data_out = self.tp(data_in1, data_in2)
        if self.tp_rescale:
            data_out /= self.sqrt_k_correction
        if self.biases is not None:
            data_out[:, self.bias_idx] += self.biases
        return data_out

    def forward(self, data_in1, data_in2=None):
        return self.forward_tp_rescale_bias(data_in1, data_in2)


class O3TensorProductSwishGate(O3TensorProduct):
    """The tensor product outputs ``scalars + gates + gated`` with the first irrep of
    ``irreps_out`` as the scalars; e3nn's ``Gate`` (SiLU, sigmoid) follows."""

    def __init__(self, irreps_in1, irreps_out, irreps_in2=None):
        irreps_out = Irreps(irreps_out)
        scalars = Irreps(str(irreps_out[0]))
        gated = Irreps(str(irreps_out[1:]))
        gates = Irreps(f"{irreps_out.num_irreps - scalars.num_irreps}x0e")
        super().__init__(irreps_in1, (scalars + gates + gated).simplify(), irreps_in2)
        if gated.num_irreps > 0:
            self.gate = Gate(scalars, [nn.SiLU()], gates, [torch.sigmoid], gated)
        else:
            self.gate = nn.SiLU()

    def forward(self, data_in1, data_in2=None):
        return self.gate(self.forward_tp_rescale_bias(data_in1, data_in2))


class InstanceNorm(nn.Module):
    """Graph-wise norm: centre the scalars, divide every irrep copy by the root of its
    mean (over the graph) squared component norm plus eps, affine weight and scalar bias."""

    def __init__(self, irreps, eps=1e-5, affine=True):
        super().__init__()
        self.irreps = Irreps(irreps)
        self.eps = eps
        self.affine = affine
        self.weight = nn.Parameter(torch.ones(self.irreps.num_irreps))
        self.bias = nn.Parameter(torch.zeros(sum(mul for mul, ir in self.irreps if ir.l == 0)))

    def forward(self, x, batch):
        fields, ix, iw, ib = [], 0, 0, 0
        for mul, ir in self.irreps:
            d = ir.dim
            field = x[:, ix:ix + mul * d].reshape(-1, mul, d)
            ix += mul * d
            # The original's global_mean_pool pooled over dim 0 (PyG of its time); scatter
            # says so explicitly (today's global_mean_pool pools a 3-d input over dim -2).
            if ir.l == 0:
                field = field - scatter(field, batch, dim=0, reduce="mean").reshape(-1, mul, 1)[batch]
            norm = scatter(field.pow(2).mean(-1), batch, dim=0, reduce="mean")
            norm = (norm + self.eps).pow(-0.5)
            if self.affine:
                norm = norm * self.weight[None, iw:iw + mul]
                iw += mul
            field = field * norm[batch].reshape(-1, mul, 1)
            if self.affine and d == 1:
                field = field + self.bias[ib:ib + mul].reshape(mul, 1)
                ib += mul
            fields.append(field.reshape(-1, mul * d))
        return torch.cat(fields, dim=-1)


class SEGNNLayer(MessagePassing):
    """E(3)-equivariant message passing layer (messages from ``cat(x_i, x_j, extra)``)."""

    def __init__(self, input_irreps, hidden_irreps, output_irreps, edge_attr_irreps, node_attr_irreps,
                 norm=None, additional_message_irreps=None):
        super().__init__(node_dim=-2, aggr="add")
        self.hidden_irreps = hidden_irreps
        additional = Irreps("") if additional_message_irreps is None else additional_message_irreps
        message_input_irreps = (2 * input_irreps + additional).simplify()
        update_input_irreps = (input_irreps + hidden_irreps).simplify()
        self.message_layer_1 = O3TensorProductSwishGate(message_input_irreps, hidden_irreps, edge_attr_irreps)
        self.message_layer_2 = O3TensorProductSwishGate(hidden_irreps, hidden_irreps, edge_attr_irreps)
        self.update_layer_1 = O3TensorProductSwishGate(update_input_irreps, hidden_irreps, node_attr_irreps)
        self.update_layer_2 = O3TensorProduct(hidden_irreps, hidden_irreps, node_attr_irreps)
        self.norm = norm
        self.feature_norm = self.message_norm = None
        if norm == "batch":
            self.feature_norm = BatchNorm(hidden_irreps)
            self.message_norm = BatchNorm(hidden_irreps)
        elif norm == "instance":
            self.feature_norm = InstanceNorm(hidden_irreps)

    def forward(self, x, edge_index, edge_attr, node_attr, batch, additional_message_features=None):
        x = self.propagate(edge_index, x=x, node_attr=node_attr, edge_attr=edge_attr,
                           additional_message_features=additional_message_features)
        if self.feature_norm:
            x = self.feature_norm(x) if self.norm == "batch" else self.feature_norm(x, batch)
        return x

    def message(self, x_i, x_j, edge_attr, additional_message_features):
        if additional_message_features is None:
            inputs = torch.cat((x_i, x_j), dim=-1)
        else:
            inputs = torch.cat((x_i, x_j, additional_message_features), dim=-1)
        message = self.message_layer_1(inputs, edge_attr)
        message = self.message_layer_2(message, edge_attr)
        if self.message_norm:
            message = self.message_norm(message)
        return message

    def update(self, message, x, node_attr):
        update = self.update_layer_1(torch.cat((x, message), dim=-1), node_attr)
        update = self.update_layer_2(update, node_attr)
        x += update
        return x


class SEGNN(nn.Module):
    """Embedding, ``num_layers`` SEGNN layers, two pre-pooling layers and (``task="graph"``)
    pooling with two post-pooling layers."""

    def __init__(self, input_irreps, hidden_irreps, output_irreps, edge_attr_irreps, node_attr_irreps,
                 num_layers, norm=None, pool="avg", task="graph", additional_message_irreps=None):
        super().__init__()
        self.task = task
        self.embedding_layer = O3TensorProduct(input_irreps, hidden_irreps, node_attr_irreps)
        self.layers = nn.ModuleList([
            SEGNNLayer(hidden_irreps, hidden_irreps, hidden_irreps, edge_attr_irreps, node_attr_irreps, norm=norm,
                       additional_message_irreps=additional_message_irreps)
            for _ in range(num_layers)])
        if task == "graph":
            pooled_irreps = (output_irreps * hidden_irreps.num_irreps).simplify().sort().irreps
            self.pre_pool1 = O3TensorProductSwishGate(hidden_irreps, hidden_irreps, node_attr_irreps)
            self.pre_pool2 = O3TensorProduct(hidden_irreps, pooled_irreps, node_attr_irreps)
            self.post_pool1 = O3TensorProductSwishGate(pooled_irreps, pooled_irreps)
            self.post_pool2 = O3TensorProduct(pooled_irreps, output_irreps)
            self.pooler = global_mean_pool if pool == "avg" else global_add_pool
        else:
            self.pre_pool1 = O3TensorProductSwishGate(hidden_irreps, hidden_irreps, node_attr_irreps)
            self.pre_pool2 = O3TensorProduct(hidden_irreps, output_irreps, node_attr_irreps)

    def forward(self, graph):
        x, edge_index, edge_attr, node_attr, batch = (graph.x, graph.edge_index, graph.edge_attr, graph.node_attr,
                                                      graph.batch)
        extra = getattr(graph, "additional_message_features", None)
        node_attr[:, 0] = 1.0  # catch_isolated_nodes: the trivial irrep of every node is 1
        x = self.embedding_layer(x, node_attr)
        for layer in self.layers:
            x = layer(x, edge_index, edge_attr, node_attr, batch, extra)
        x = self.pre_pool1(x, node_attr)
        x = self.pre_pool2(x, node_attr)
        if self.task == "graph":
            x = self.pooler(x, batch)
            x = self.post_pool1(x)
            x = self.post_pool2(x)
        return x
