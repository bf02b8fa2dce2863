"""Datasets by config name: each builder takes the dataset's own options (the ``data``
section of a run config, less the loader keys), validates them, and returns
:class:`DataSplits`: the three splits, the targets the data carries (key, level, unit) and
the featuriser that turns a new structure into model inputs, so that ``predict`` treats it
exactly as training did. A new dataset registers a builder here; the trainer does not
change.

>>> "qm9" in DATASETS and "emt" in DATASETS and "nbody" in DATASETS
True
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Union

import torch
from torch import Tensor

from equigraph.data import keys as K
from equigraph.registry import Registry

__all__ = ["DATASETS", "DataSplits", "TargetInfo", "build_splits", "build_featurizer", "register_dataset"]

#: The dataset registry: ``data.name`` in a config.
DATASETS = Registry("dataset")


def register_dataset(name: str):
    """Decorator: make ``fn(**options) -> DataSplits`` available as ``data.name: NAME``."""
    return DATASETS.register(name)


@dataclass(frozen=True)
class TargetInfo:
    """A quantity the data carries for training: ``data[key]``, its level and unit, and
    the model output it is compared with by default.

    ``extensive`` marks a graph quantity that is a sum over atoms (an energy): its per-atom
    references are fitted and it carries no per-graph shift.
    """

    key: str
    level: str
    unit: str
    output: Optional[str] = None
    extensive: bool = False

    @property
    def model_output(self) -> str:
        return self.output or self.key


@dataclass
class DataSplits:
    """Train / validation / test graphs plus what the trainer must know about them."""

    train: Sequence
    val: Sequence
    test: Sequence
    targets: Dict[str, TargetInfo]
    featurizer: Optional[Callable] = None
    info: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        for name in ("train", "val", "test"):
            if len(getattr(self, name)) == 0:
                raise ValueError(f"data: the {name} split is empty")
        if not self.targets:
            raise ValueError("data: the dataset declares no targets")

    def graphs(self, split: str = "train"):
        """The raw graphs of a split, without the dataset's transform (no featurising)."""
        data = getattr(self, split)
        if hasattr(data, "indices") and hasattr(data, "get"):
            return (data.get(i) for i in data.indices())
        return iter(data)

    def values(self, key: str, split: str = "train", level: Optional[str] = None) -> Tensor:
        """``data[key]`` of every graph of a split, concatenated along the first axis: one
        row per graph for ``level="graph"`` (the level of the dataset's target of that key
        when not given), else as stored (one row per node)."""
        if level is None:
            level = next((t.level for t in self.targets.values() if t.key == key), "node")
        parts = []
        for i, d in enumerate(self.graphs(split)):
            v = getattr(d, key, None)
            if v is None:
                raise ValueError(f"data: {split} graph {i} has no {key!r}")
            parts.append(v.reshape(1, *v.shape[1:]) if level == "graph" and v.dim() >= 2 and v.size(0) == 1
                         else v.reshape(1, -1) if level == "graph" else v)
        return torch.cat(parts)


def build_featurizer(spec: Union[str, dict, None]) -> Optional[Callable]:
    """The atom featuriser named by ``spec`` (``data.featurizer`` in a config), or ``None``.

    >>> build_featurizer({"name": "charge_power", "max_power": 1}).num_features
    10
    """
    if spec is None:
        return None
    from equigraph.data.featurizers import FEATURIZERS

    try:
        return FEATURIZERS.build(spec)
    except ValueError as err:
        raise ValueError(f"data.featurizer: {err}") from None


def build_splits(data_cfg: dict) -> DataSplits:
    """Build the splits of ``data_cfg`` (``name`` plus the dataset's own options)."""
    options = dict(data_cfg)
    name = options.pop("name", None)
    if name not in DATASETS:
        raise ValueError(f"data.name: unknown dataset {name!r}; known: {', '.join(DATASETS.names())}")
    try:
        DATASETS.check_kwargs(name, options)
    except ValueError as err:
        raise ValueError(f"data: {err}") from None
    return DATASETS.get(name)(**options)


def _first(dataset, n: Optional[int], what: str):
    if n is None:
        return dataset
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"data.{what}: must be a positive integer or null, got {n!r}")
    return dataset[: min(n, len(dataset))]


@register_dataset("qm9")
def qm9(root: Optional[str] = None, target: str = "gap", split: str = "egnn", max_train: Optional[int] = None,
        max_val: Optional[int] = None, max_test: Optional[int] = None,
        featurizer: Union[str, dict, None] = None) -> DataSplits:
    """QM9 (:class:`equigraph.datasets.QM9`): one target, graph-level ``y``, in its unit."""
    from equigraph.datasets.qm9 import QM9, target_index

    try:
        target_index(target)
    except ValueError as err:
        raise ValueError(f"data.target: {err}") from None
    feat = build_featurizer(featurizer)
    kwargs = {"root": root, "target": target, "split": split, "transform": feat, "max_train": max_train}
    parts = {s: QM9(subset=s, **kwargs) for s in ("train", "val", "test")}
    return DataSplits(
        train=parts["train"],
        val=_first(parts["val"], max_val, "max_val"),
        test=_first(parts["test"], max_test, "max_test"),
        targets={target: TargetInfo(K.Y, "graph", parts["train"].unit)},
        featurizer=feat,
        info={"split": split, "source": parts["train"].source},
    )


@register_dataset("emt")
def emt(root: Optional[str] = None, num_structures: int = 1000, elements: Union[str, list] = ("Cu", "Pt"),
        rattle: float = 0.05, strain: float = 0.03, kinds: Union[str, list] = ("bulk", "slab"), seed: int = 0,
        max_train: Optional[int] = None, stress: bool = False) -> DataSplits:
    """Periodic energy / forces (/ stress) from ASE's EMT calculator
    (:class:`equigraph.datasets.EMT`)."""
    from equigraph.datasets.emt import EMT

    kwargs = dict(num_structures=num_structures, elements=tuple(elements) if not isinstance(elements, str) else elements,
                  rattle=rattle, strain=strain, kinds=tuple(kinds) if not isinstance(kinds, str) else kinds, seed=seed)
    parts = {s: EMT(root, subset=s, log=False, **kwargs) for s in ("train", "val", "test")}
    targets = {"energy": TargetInfo(K.ENERGY, "graph", "eV", extensive=True),
               "forces": TargetInfo(K.FORCES, "node", "eV/Å")}
    if stress:
        targets["stress"] = TargetInfo(K.STRESS, "graph", "eV/Å^3")
    return DataSplits(train=_first(parts["train"], max_train, "max_train"), val=parts["val"], test=parts["test"],
                      targets=targets, info={"num_structures": num_structures})


@register_dataset("nbody")
def nbody(root: Optional[str] = None, max_train: Optional[int] = 3000, max_val: Optional[int] = None,
          max_test: Optional[int] = None, squared_distance: bool = True, files: Optional[str] = None) -> DataSplits:
    """The charged 5-body benchmark (:class:`equigraph.datasets.NBody`): positions 1,000
    steps ahead as ``target_pos``, compared with the model's ``pos``. With
    ``squared_distance`` the input squared distance is appended to ``edge_attr`` (the
    reference code's ``in_edge_nf=2``), once, when the splits are built. ``files``: a folder
    with the published ``.npy`` files instead of the generated trajectories."""
    from equigraph.datasets.nbody import NBody

    parts = {s: NBody(root, split=s, files=files) for s in ("train", "valid", "test")}
    limits = {"train": max_train, "valid": max_val, "test": max_test}
    names = {"train": "max_train", "valid": "max_val", "test": "max_test"}
    graphs = {}
    for split, ds in parts.items():
        ds = _first(ds, limits[split], names[split])
        # 5-node graphs: a list of ready graphs costs nothing and spares a transform per access.
        graphs[split] = [_append_squared_distance(d) if squared_distance else d for d in ds]
    return DataSplits(
        train=graphs["train"],
        val=graphs["valid"],
        test=graphs["test"],
        targets={"pos": TargetInfo(K.TARGET_POS, "node", "", output=K.POS)},
    )


def _append_squared_distance(data):
    src, dst = data[K.EDGE_INDEX]
    sq = (data[K.POS][src] - data[K.POS][dst]).square().sum(-1, keepdim=True)
    data = data.clone()
    data[K.EDGE_ATTR] = torch.cat([data[K.EDGE_ATTR], sq], dim=-1)
    return data


@register_dataset("surface_normals")
def surface_normals(root: Optional[str] = None, num_train: int = 800, num_val: int = 100, num_test: int = 100,
                    num_points: int = 512, seed: int = 0, kinds: Optional[list] = None,
                    files: Optional[str] = None) -> DataSplits:
    """Point clouds with exact unoriented normals (:class:`equigraph.datasets.SurfaceNormals`),
    or a folder of normal files (``files``); target ``normal`` per point."""
    from equigraph.datasets.point_clouds import SURFACE_KINDS, surface_normals_splits

    return surface_normals_splits(root, num_train, num_val, num_test, num_points, seed,
                                  SURFACE_KINDS if kinds is None else kinds, files)
