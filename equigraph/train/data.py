"""Lightning loaders over :class:`equigraph.datasets.DataSplits` (the dataset registry,
split building and each dataset's options live in :mod:`equigraph.datasets.registry`)."""
from __future__ import annotations

import lightning.pytorch as pl
from torch_geometric.loader import DataLoader

from equigraph.datasets.registry import DataSplits


class SplitsDataModule(pl.LightningDataModule):
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
