"""Datasets with targets, units and named splits, and the registry that builds them from a
config's ``data`` section (:mod:`equigraph.datasets.registry`)."""
from equigraph.datasets.nbody import NBody  # noqa: F401
from equigraph.datasets.qm9 import QM9, TARGETS as QM9_TARGETS, split_indices  # noqa: F401
from equigraph.datasets.ase_dataset import AseDataset  # noqa: F401
from equigraph.datasets.point_clouds import NormalFiles, SurfaceNormals, read_normals_file, sample_surface  # noqa: F401
from equigraph.datasets.emt import EMT, UNITS as EMT_UNITS, generate_emt_structures  # noqa: F401
from equigraph.datasets.registry import (  # noqa: F401
    DATASETS,
    DataSplits,
    TargetInfo,
    build_featurizer,
    build_splits,
    register_dataset,
)
from equigraph.datasets.oc20 import OC20, oc20_splits, record_to_data  # noqa: F401,E402
from equigraph.datasets.oc20_generate import generate_oc20_emt  # noqa: F401,E402

DATASETS.register("oc20", oc20_splits)
