"""The single registry of the attribute names equigraph reads from and writes to a
:class:`torch_geometric.data.Data`.

Use these constants instead of string literals. Shapes are per graph unless marked
batched; ``N`` atoms/nodes, ``E`` edges, ``G`` graphs in a batch. Units: positions in Å,
energies in eV, forces in eV/Å, stress in eV/Å^3 (ASE's conventions); dataset targets
state their own units in their docstrings.
"""

#: ``[N]`` long: atomic numbers.
Z = "z"
#: ``[N, 3]`` float: Cartesian positions in Å.
POS = "pos"
#: ``[N, F]`` float: invariant node features.
X = "x"
#: ``[N, 3]`` float: velocities (Å per time unit of the dataset).
VEL = "vel"
#: ``[1, 3, 3]`` float per graph (``[G, 3, 3]`` batched): lattice vectors as rows, Å.
CELL = "cell"
#: ``[1, 3]`` bool per graph (``[G, 3]`` batched): periodic along each lattice vector.
PBC = "pbc"
#: ``[1]`` float per graph (``[G]`` batched): total energy, eV.
ENERGY = "energy"
#: ``[N, 3]`` float: forces, eV/Å.
FORCES = "forces"
#: ``[1, 3, 3]`` float per graph: stress, eV/Å^3 (ASE sign convention).
STRESS = "stress"
#: ``[N]`` float: per-atom partial charges, e.
CHARGES = "charges"
#: ``[1, T]`` float per graph (graph targets) or ``[N, T]`` (node targets).
Y = "y"
#: ``[N]`` long: graph index of each node (sorted by PyG's batching; any order accepted).
BATCH = "batch"
#: ``[2, E]`` long: ``edge_index[0]`` = neighbour ``j`` (source), ``edge_index[1]`` = centre
#: ``i`` (target), PyG's ``source_to_target`` flow.
EDGE_INDEX = "edge_index"
#: ``[E, 3]`` float with integer values: cell offsets of the neighbour image, so that
#: ``vec_ij = pos[j] - pos[i] + shift @ cell[batch[i]]``.
SHIFT = "shift"
#: ``[E, D]`` float: edge attributes (bond features, charges products, ...).
EDGE_ATTR = "edge_attr"
#: ``[E, 3]`` float: edge vectors ``pos[j] - pos[i] + shift @ cell``, Å (derived).
EDGE_VEC = "edge_vec"
#: ``[N, F]`` float: invariant node features a model outputs (model output key).
H = "h"
#: ``[N, T]`` float: per-node contributions whose sum over a graph is the readout ``y``
#: (minus its per-graph shift); model output key.
NODE_Y = "node_y"
#: ``[N]`` float: per-atom energy contributions, eV (model output key of energy models).
NODE_ENERGY = "node_energy"
#: ``[N, C, 3]`` float: per-node equivariant vectors a model outputs (model output key).
VEC = "vec"
#: ``[N, 3]`` float: unit surface normals of a point cloud (unoriented: ``n`` and ``-n`` alike).
NORMAL = "normal"
#: ``[N, 3]`` float: regression target for positions (N-body).
TARGET_POS = "target_pos"
#: ``int``: graphs of a padded batch that are data; the padding graphs follow them
#: (:class:`equigraph.train.padding.BucketPadding`).
REAL_GRAPHS = "num_real_graphs"
#: ``int``: nodes of a padded batch that are data; the padding nodes follow them.
REAL_NODES = "num_real_nodes"

GRAPH_KEYS = (CELL, PBC, ENERGY, STRESS)
NODE_KEYS = (Z, POS, X, VEL, FORCES, CHARGES, BATCH)
EDGE_KEYS = (EDGE_INDEX, SHIFT, EDGE_ATTR, EDGE_VEC)
