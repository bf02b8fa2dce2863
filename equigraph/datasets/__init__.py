"""Datasets with targets, units and named splits, and the registry that builds them from a
config's ``data`` section (:mod:`equigraph.datasets.registry`)."""
from equigraph.datasets.nbody import NBody  # noqa: F401
from equigraph.datasets.qm9 import QM9, TARGETS as QM9_TARGETS, split_indices  # noqa: F401
from equigraph.datasets.ase_dataset import AseDataset  # noqa: F401
from equigraph.datasets.emt import EMT, UNITS as EMT_UNITS, generate_emt_structures  # noqa: F401
from equigraph.datasets.registry import (  # noqa: F401
    DATASETS,
    DataSplits,
    TargetInfo,
    build_featurizer,
    build_splits,
    register_dataset,
)
