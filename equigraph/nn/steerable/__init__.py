"""Steerable (e3nn irreps) building blocks: spherical-harmonic attributes, attribute-
conditioned tensor products, gates, equivariant norms and the hidden-irreps recipes of
SEGNN."""
from .cueq import TP_BACKENDS, CueqTensorProduct, check_tp_backend
from .attributes import SteerableAttributes, check_edge_lengths, edge_attributes, node_attributes
from .gate import Gate, gate_irreps
from .irreps import BalancedIrreps, WeightBalancedIrreps, as_irreps, tensor_product_weight_numel
from .norm import BatchNorm, InstanceNorm
from .tensor_product import O3TensorProduct, O3TensorProductGate

__all__ = [
    "SteerableAttributes",
    "edge_attributes",
    "node_attributes",
    "check_edge_lengths",
    "Gate",
    "gate_irreps",
    "BalancedIrreps",
    "WeightBalancedIrreps",
    "as_irreps",
    "tensor_product_weight_numel",
    "InstanceNorm",
    "BatchNorm",
    "O3TensorProduct",
    "O3TensorProductGate",
    "TP_BACKENDS",
    "CueqTensorProduct",
    "check_tp_backend",
]
