r"""Frames for frame averaging (Puny et al., `"Frame Averaging for Invariant and
Equivariant Network Design" <https://arxiv.org/abs/2110.03336>`_, ICLR 2022): PCA frames per
graph (:func:`pca_frames`) and per point (:func:`local_pca_frames`), finite groups
(:func:`finite_group`), the replication of a batch into frame copies (:func:`replicate`,
:func:`canonicalize`) and the averaging of outputs back (:func:`average_outputs`). The
wrappers are :class:`equigraph.models.FrameAveraging` and
:class:`equigraph.models.GroupAveraging`.
"""
from .averaging import average_outputs, canonicalize, input_level, row_graphs
from .batching import num_graphs_of, replicate
from .groups import FINITE_GROUPS, check_rotations, finite_group, octahedral_group
from .knn import knn_edge_index, knn_index
from .pca import (
    DegeneracyCounter,
    DegenerateFrameWarning,
    check_group,
    check_tol,
    Frames,
    default_tol,
    frame_signs,
    frame_size,
    has_reflections,
    has_translations,
    local_pca_frames,
    pca_frames,
)
from .transform import VECTOR_TYPES, check_value_shape, frame_transform

from equigraph.nn.frames.heads import OuterProduct, PrincipalAxis

__all__ = [
    "Frames",
    "DegenerateFrameWarning",
    "DegeneracyCounter",
    "check_group",
    "check_tol",
    "pca_frames",
    "local_pca_frames",
    "frame_signs",
    "frame_size",
    "default_tol",
    "has_reflections",
    "has_translations",
    "finite_group",
    "octahedral_group",
    "check_rotations",
    "FINITE_GROUPS",
    "frame_transform",
    "check_value_shape",
    "VECTOR_TYPES",
    "replicate",
    "num_graphs_of",
    "canonicalize",
    "average_outputs",
    "row_graphs",
    "input_level",
    "knn_index",
    "knn_edge_index",
    "OuterProduct",
    "PrincipalAxis",
]
