"""Lightning loaders over :class:`equigraph.datasets.DataSplits` (the dataset registry,
split building and each dataset's options live in :mod:`equigraph.datasets.registry`)."""
from __future__ import annotations

from typing import Callable, Optional

import lightning.pytorch as pl
from torch_geometric.loader import DataLoader

from equigraph.datasets.registry import DataSplits
from equigraph.train.config import LOADERS
from equigraph.train.device_loader import DeviceBatches
from equigraph.train.padding import BucketPadding


class SplitsDataModule(pl.LightningDataModule):
    """Loaders over :class:`DataSplits`.

    ``loader="pyg"``: PyG's ``DataLoader`` (Lightning adds the distributed sampler under
    DDP). ``loader="device"``: each split collated once on the training device and checked
    once (:class:`~equigraph.train.device_loader.DeviceBatches`; this process's share under
    DDP; ``max_z`` and ``max_edge_length`` are the model's bounds that the check enforces), with
    the model's interaction graph built once per split when ``graph`` is given,
    and every batch padded to bucket sizes when ``pad`` is given
    (:class:`~equigraph.train.padding.BucketPadding`).
    """

    def __init__(self, splits: DataSplits, batch_size: int = 96, eval_batch_size: int | None = None,
                 num_workers: int = 0, loader: str = "pyg", seed: int = 0, max_z: Optional[int] = None,
                 graph: Optional[Callable] = None, pad: Optional[BucketPadding] = None,
                 max_edge_length: Optional[float] = None):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size: must be positive, got {batch_size}")
        if loader not in LOADERS:
            raise ValueError(f"loader: expected one of {', '.join(LOADERS)}, got {loader!r}")
        self.splits = splits
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        if pad is not None and loader != "device":
            raise ValueError(f"pad: padding to bucket sizes needs loader='device', got {loader!r}")
        self.loader, self.seed, self.max_z, self.graph, self.pad = loader, seed, max_z, graph, pad
        self.max_edge_length = max_edge_length
        self._device_batches: dict[str, DeviceBatches] = {}

    def _loader(self, split, batch_size, shuffle):
        data = getattr(self.splits, split)
        if self.loader == "pyg":
            return DataLoader(data, batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers,
                              persistent_workers=self.num_workers > 0)
        if split not in self._device_batches:  # collated once per run, not once per epoch
            trainer = self.trainer
            rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
            device = trainer.strategy.root_device if trainer is not None else "cpu"
            self._device_batches[split] = DeviceBatches(
                data, batch_size, shuffle=shuffle, device=device, seed=self.seed, rank=rank, world_size=world,
                split=split, max_z=self.max_z, max_edge_length=self.max_edge_length, graph=self.graph, pad=self.pad)
        return self._device_batches[split]

    def train_dataloader(self):
        return self._loader("train", self.batch_size, True)

    def val_dataloader(self):
        return self._loader("val", self.eval_batch_size, False)

    def test_dataloader(self):
        return self._loader("test", self.eval_batch_size, False)
