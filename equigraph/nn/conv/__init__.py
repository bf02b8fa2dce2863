"""Message-passing layers; every one follows PyG's ``MessagePassing`` contract."""
from .egnn import EGNNConv
from .segnn import SEGNNConv
from .tfn import TFNConv

__all__ = ["EGNNConv", "SEGNNConv", "TFNConv"]
