"""Non-equivariant point-cloud and graph networks that :class:`equigraph.models.FrameAveraging`
makes equivariant (PointNet, DGCNN, the N-body GNN), and FA-Local-PointNet, equivariant by
its local frames. Each takes a PyG ``Data``/``Batch``, returns a dict and declares its
output (``model.outputs``); they are registered as models ``"pointnet"``, ``"dgcnn"``,
``"gnn"`` and ``"fa_local_pointnet"`` by :mod:`equigraph.models.frame_averaging`.
"""
from .dgcnn import DGCNN
from .gnn import GCL, GNN
from .local_pointnet import FALocalPointNet
from .pointnet import PointNet

__all__ = ["PointNet", "DGCNN", "GNN", "GCL", "FALocalPointNet"]
