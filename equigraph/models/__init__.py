"""Whole models on PyG data (``forward(data) -> dict``) on one contract (declared outputs,
input checks, graph building: :mod:`equigraph.models.contract`), their shared readouts, the
energy / forces / stress wrapper, the registry that maps config names to constructors, and
saving / loading without Lightning."""
from .contract import EquigraphModel, Graph, Output, declared_outputs, resolve_interaction_graph
from .registry import MODELS, available_models, build_model, register_model
from .readout import Readout
from .egnn import EGNN
from .force_field import ForceField
from .io import load, save
from .frame_averaging import FrameAveraging, GroupAveraging
from .schnet import SchNet
from .segnn import SEGNN
from .tfn import TFN

__all__ = [
    "EquigraphModel", "Output", "Graph", "declared_outputs", "resolve_interaction_graph",
    "EGNN", "ForceField", "Readout", "FrameAveraging", "GroupAveraging", "SchNet", "SEGNN", "TFN",
    "MODELS", "register_model", "build_model", "available_models",
    "save", "load",
]
