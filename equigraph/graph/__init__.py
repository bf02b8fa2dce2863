"""Neighbour search: radius (open and periodic), k-nearest and full graphs, the
interaction-graph callables models plug in, and PyG transforms.

Every builder returns ``edge_index`` with ``edge_index[0]`` the neighbour ``j`` and
``edge_index[1]`` the centre ``i`` (PyG's ``source_to_target`` flow), sorted by centre
then neighbour, never joining two graphs of a batch whatever the order of ``batch``.
"""
from equigraph.graph.checks import (
    check_batch,
    check_cell_pbc,
    check_cutoff,
    check_min_distance,
    check_pos,
    check_positive_int,
)
from equigraph.graph.coincidence import DEFAULT_MIN_DISTANCE
from equigraph.graph.full import full_graph
from equigraph.graph.interaction import (
    FullInteractionGraph,
    KNNInteractionGraph,
    RadiusInteractionGraph,
    is_periodic,
)
from equigraph.graph.knn import KNN_BACKENDS, knn_graph, knn_neighbours
from equigraph.graph.radius import BACKENDS, choose_backend, periodic_radius_graph, radius_graph
from equigraph.graph.transforms import FullGraph, KNNGraph, RadiusGraph

__all__ = [
    "radius_graph",
    "periodic_radius_graph",
    "knn_graph",
    "knn_neighbours",
    "KNN_BACKENDS",
    "full_graph",
    "RadiusInteractionGraph",
    "FullInteractionGraph",
    "KNNInteractionGraph",
    "RadiusGraph",
    "KNNGraph",
    "FullGraph",
    "check_batch",
    "check_pos",
    "check_cutoff",
    "check_positive_int",
    "check_cell_pbc",
    "check_min_distance",
    "DEFAULT_MIN_DISTANCE",
    "is_periodic",
    "BACKENDS",
    "choose_backend",
]
