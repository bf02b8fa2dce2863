"""Tiny synthetic molecules and a tiny test-only model for the training tests.

The target is a sum of per-element contributions plus a distance term, so that a model with
an element embedding, distances and a sum readout can fit it quickly and exactly enough for
a loss-decrease check.
"""
from __future__ import annotations

import torch
from torch import nn
from torch_geometric.data import Data
from torch_geometric.utils import scatter

from equigraph.datasets.registry import DATASETS, DataSplits, TargetInfo, build_featurizer, register_dataset

ELEMENTS = (1, 6, 7, 8)
CONTRIBUTION = {1: -0.5, 6: 1.0, 7: 1.5, 8: 2.0}


def molecule(generator: torch.Generator) -> Data:
    n = int(torch.randint(3, 8, (1,), generator=generator))
    z = torch.tensor(ELEMENTS)[torch.randint(0, len(ELEMENTS), (n,), generator=generator)]
    pos = 1.5 * torch.randn(n, 3, generator=generator)
    centre = pos.mean(0, keepdim=True)
    y = sum(CONTRIBUTION[int(a)] for a in z) + 0.05 * (pos - centre).norm(dim=-1).sum()
    return Data(z=z, pos=pos, y=torch.tensor([[float(y)]]))


def molecules(count: int, seed: int = 0) -> list[Data]:
    g = torch.Generator().manual_seed(seed)
    return [molecule(g) for _ in range(count)]


def splits(n_train: int = 48, n_val: int = 16, n_test: int = 16, unit: str = "eV", featurizer=None) -> DataSplits:
    parts = [molecules(n, seed) for n, seed in ((n_train, 0), (n_val, 1), (n_test, 2))]
    if featurizer is not None:
        parts = [[featurizer(d) for d in part] for part in parts]
    return DataSplits(*parts, targets={"synthetic": TargetInfo("y", "graph", unit)}, featurizer=featurizer)


def _synthetic(max_train: int = 48, max_val: int = 16, max_test: int = 16, featurizer=None) -> DataSplits:
    """``data.name: synthetic`` for configs in tests (CLI, DDP)."""
    return splits(max_train, max_val, max_test, featurizer=build_featurizer(featurizer))


if "synthetic" not in DATASETS:
    register_dataset("synthetic")(_synthetic)


def egnn_config(tmp_path, **train) -> dict:
    """A tiny registry EGNN on charge-power features of the synthetic molecules."""
    cfg = tiny_config(tmp_path, **train)
    cfg["model"] = {"name": "egnn", "in_channels": 15, "hidden_channels": 8, "num_layers": 1, "out_channels": 1,
                    "graph_mlp": True, "update_coords": False, "interaction_graph": 5.0}
    cfg["data"]["featurizer"] = "charge_power"
    return cfg


class TinyModel(nn.Module):
    """Element embedding + distance-to-centroid features, summed per graph, then a graph MLP (test only)."""

    def __init__(self, hidden: int = 16):
        super().__init__()
        self.emb = nn.Embedding(10, hidden)
        self.node = nn.Sequential(nn.Linear(hidden + 1, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        # A graph-level head after the sum, as in EGNN: the standardised target is not additive.
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def forward(self, data):
        batch = data.batch if data.batch is not None else torch.zeros_like(data.z)
        centre = scatter(data.pos, batch, dim=0, reduce="mean")[batch]
        r = (data.pos - centre).norm(dim=-1, keepdim=True)
        h = torch.cat([self.emb(data.z), r], dim=-1)
        return {"h": h, "y": self.head(scatter(self.node(h), batch, dim=0, reduce="sum"))}


def tiny_config(tmp_path, **train) -> dict:
    cfg = {
        "seed": 0,
        "out_dir": str(tmp_path / "run"),
        "model": {"name": "tiny-test-model"},
        "data": {"name": "synthetic", "batch_size": 16},
        "train": {"max_epochs": 2, "lr": 5e-3, "progress_bar": False, "log_every_n_steps": 1,
                  "accelerator": "cpu", "scheduler": "none"},
    }
    cfg["train"].update(train)
    return cfg
