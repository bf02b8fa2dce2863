"""Whole models on PyG data (``forward(data) -> dict``), their shared readouts and the
registry that maps config names to constructors."""
from .registry import available_models, build_model, register_model
from .readout import Readout
from .egnn import EGNN

__all__ = ["EGNN", "Readout", "register_model", "build_model", "available_models"]
