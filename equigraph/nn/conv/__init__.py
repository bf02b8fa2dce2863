"""Message-passing layers; every one follows PyG's ``MessagePassing`` contract."""
from .egnn import EGNNConv

__all__ = ["EGNNConv"]
