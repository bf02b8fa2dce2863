"""Datasets for training, named in a config's ``data`` section, and their Lightning loaders.

A dataset builder takes the ``data`` section and returns :class:`DataSplits`: the three
splits, the target's name, unit and column, and the featuriser that turns a new molecule
(``z``, ``pos``) into model inputs, so that ``predict`` treats it exactly as training did.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch_geometric.loader import DataLoader

from equigraph.data import keys as K


@dataclass
class DataSplits:
    """Train / validation / test graphs plus what the trainer must know about the target."""

    train: Sequence
    val: Sequence
    test: Sequence
    target: str
    unit: str
    target_index: list[int] | None = None
    featurizer: Callable | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        for name in ("train", "val", "test"):
            if len(getattr(self, name)) == 0:
                raise ValueError(f"data: the {name} split is empty")

    def targets(self, split: str = "train") -> Tensor:
        """``[M, T]`` targets of a split (the selected columns), for statistics and baselines."""
        data = getattr(self, split)
        if hasattr(data, "indices") and hasattr(data, "get"):
            # A PyG dataset: skip its transform (featurising every graph just to read y).
            graphs = (data.get(i) for i in data.indices())
        else:
            graphs = iter(data)
        ys = [getattr(d, K.Y).reshape(1, -1) for d in graphs]
        y = torch.cat(ys)
        return y if self.target_index is None else y[:, self.target_index]


DATASETS: dict[str, Callable[[dict], DataSplits]] = {}


def register_dataset(name: str):
    """Decorator: make ``fn(data_cfg) -> DataSplits`` available as ``data.name: NAME``."""

    def wrap(fn):
        DATASETS[name] = fn
        return fn

    return wrap


def _featurizers() -> dict[str, Callable]:
    from equigraph.data import featurizers as F

    return {"charge_power": F.ChargePower, "element_onehot": F.ElementOneHot}


def build_featurizer(spec: str | dict | None) -> Callable | None:
    """The atom featuriser named by ``spec`` (``data.featurizer`` in a config), or ``None``.

    ``spec`` is a name (``"charge_power"``: EGNN's QM9 features; ``"element_onehot"``) or a
    mapping ``{name: ..., **kwargs}`` of the featuriser's constructor arguments.

    >>> build_featurizer({"name": "charge_power", "max_power": 1}).num_features
    10
    """
    if spec is None:
        return None
    kwargs = dict(spec) if isinstance(spec, dict) else {"name": spec}
    name = kwargs.pop("name", None)
    known = _featurizers()
    if name not in known:
        raise ValueError(f"data.featurizer: unknown featuriser {name!r}; known: {sorted(known)}")
    return known[name](**kwargs)


def build_splits(data_cfg: dict) -> DataSplits:
    """Build the splits named by ``data_cfg["name"]``; unknown names list the known ones."""
    name = data_cfg.get("name")
    if name not in DATASETS:
        raise ValueError(f"data.name: unknown dataset {name!r}; known: {sorted(DATASETS)}")
    splits = DATASETS[name](data_cfg)
    return splits


def _first(dataset, n: int | None, what: str):
    if n is None:
        return dataset
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"data.{what}: must be a positive integer or null, got {n!r}")
    return dataset[: min(n, len(dataset))]


@register_dataset("qm9")
def _qm9(cfg: dict) -> DataSplits:
    from equigraph.datasets.qm9 import QM9

    featurizer = build_featurizer(cfg.get("featurizer"))
    kwargs = {"root": cfg.get("root"), "target": cfg["target"], "split": cfg["split"], "transform": featurizer,
              "max_train": cfg.get("max_train")}
    parts = {s: QM9(subset=s, **kwargs) for s in ("train", "val", "test")}
    return DataSplits(
        train=parts["train"],
        val=_first(parts["val"], cfg.get("max_val"), "max_val"),
        test=_first(parts["test"], cfg.get("max_test"), "max_test"),
        target=cfg["target"],
        unit=parts["train"].unit,
        featurizer=featurizer,
        info={"split": cfg["split"], "source": parts["train"].source},
    )


class PropertyDataModule(pl.LightningDataModule):
    """Loaders over :class:`DataSplits`; Lightning adds the distributed sampler under DDP."""

    def __init__(self, splits: DataSplits, batch_size: int = 96, eval_batch_size: int | None = None,
                 num_workers: int = 0):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size: must be positive, got {batch_size}")
        self.splits = splits
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers

    def _loader(self, data, batch_size, shuffle):
        return DataLoader(data, batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self):
        return self._loader(self.splits.train, self.batch_size, True)

    def val_dataloader(self):
        return self._loader(self.splits.val, self.eval_batch_size, False)

    def test_dataloader(self):
        return self._loader(self.splits.test, self.eval_batch_size, False)
