"""Equivariant building blocks: edge geometry, radial bases, cutoff envelopes and
message-passing layers (``equigraph.nn.conv``)."""
import warnings

from equigraph.nn.cutoff import CosineCutoff, PolynomialCutoff
from equigraph.nn.geometry import edge_length_and_unit, edge_vec, safe_norm, safe_normalize
from equigraph.nn.radial import BesselBasis, GaussianBasis
from equigraph.nn import backbones, frames, steerable  # noqa: F401
from equigraph.nn.steerable import (
    BalancedIrreps,
    Gate,
    O3TensorProduct,
    O3TensorProductGate,
    SteerableAttributes,
    WeightBalancedIrreps,
)

__all__ = [
    "edge_vec",
    "safe_norm",
    "safe_normalize",
    "edge_length_and_unit",
    "BesselBasis",
    "GaussianBasis",
    "CosineCutoff",
    "PolynomialCutoff",
    "SteerableAttributes",
    "O3TensorProduct",
    "O3TensorProductGate",
    "Gate",
    "BalancedIrreps",
    "WeightBalancedIrreps",
]

try:
    from equigraph.nn import conv as _conv
    from equigraph.nn.conv import *  # noqa: F401,F403
except ImportError as err:  # pragma: no cover
    # The geometric pieces above must stay importable even when a layer's optional
    # dependency is missing; say so instead of failing silently.
    warnings.warn(f"equigraph.nn.conv could not be imported: {err}", stacklevel=2)
    _conv = None
__all__ += list(getattr(_conv, "__all__", []))
