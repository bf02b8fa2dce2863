
from equigraph.datasets.nbody import NBody  # noqa: F401
from equigraph.datasets.qm9 import QM9, TARGETS as QM9_TARGETS, split_indices  # noqa: F401
from equigraph.datasets.ase_dataset import AseDataset  # noqa: F401
