"""Frame averaging for your own PyTorch Geometric model, in three lines.

    python examples/frame_averaging_pyg.py           # equivariance check + normal-estimation training (about a minute)
    python examples/frame_averaging_pyg.py --quick   # equivariance check + a few training steps (seconds)

Two ordinary, non-equivariant PyG networks predict a normal for every point of a cloud: a
DGCNN-style net of PyG ``EdgeConv`` layers and a PointNet++-style net of PyG
``PointNetConv`` layers, both on equigraph's batched k-nearest-neighbour graph (no
``torch_cluster`` needed). Wrapping one is

    model = FrameAveraging(net, outputs={"y": Output("vector", "node")})

(the network returns a tensor of per-point vectors; the declaration tells the wrapper to
rotate each frame copy's prediction back). ``assert_equivariant`` then passes under
rotations, reflections, translations and permutations, where the bare network fails.

The training part estimates the normals of points on random ellipsoids, trained on
axis-aligned ellipsoids and tested on randomly rotated and shifted ones: the bare network
has only seen one orientation, the frame-averaged one sees every input in its canonical
PCA frame, so its test error matches its training error. It trains with stochastic frame
averaging (one random frame element per cloud and step, as cheap as the bare network) and
predicts with the full average.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch_geometric.data import Batch, Data
from torch_geometric.nn import MLP, EdgeConv, PointNetConv

from equigraph.models.contract import Output
from equigraph.models.frame_averaging import FrameAveraging
from equigraph.nn.frames import knn_edge_index, knn_index
from equigraph.symmetry import random_rotation
from equigraph.testing import assert_equivariant


class EdgeConvNet(torch.nn.Module):
    """Two PyG EdgeConv layers on the kNN graph of the points, per-point head."""

    def __init__(self, k: int = 10, hidden: int = 32):
        super().__init__()
        self.k = k
        self.conv1 = EdgeConv(MLP([6, hidden, hidden], norm=None), aggr="max")
        self.conv2 = EdgeConv(MLP([2 * hidden, hidden, hidden], norm=None), aggr="max")
        self.head = MLP([2 * hidden, hidden, 3], norm=None)

    def forward(self, data):
        edge_index = knn_edge_index(knn_index(data.pos, self.k, data.batch))
        h1 = self.conv1(data.pos, edge_index)
        h2 = self.conv2(h1, edge_index)
        return self.head(torch.cat([h1, h2], dim=-1))


class PointNetConvNet(torch.nn.Module):
    """Two PyG PointNetConv layers (PointNet++ set abstraction without sampling)."""

    def __init__(self, k: int = 10, hidden: int = 32):
        super().__init__()
        self.k = k
        self.conv1 = PointNetConv(MLP([3 + 3, hidden, hidden], norm=None), MLP([hidden, hidden], norm=None))
        self.conv2 = PointNetConv(MLP([hidden + 3, hidden, hidden], norm=None), MLP([hidden, hidden], norm=None))
        self.head = MLP([2 * hidden, hidden, 3], norm=None)

    def forward(self, data):
        edge_index = knn_edge_index(knn_index(data.pos, self.k, data.batch, loop=False))
        h1 = self.conv1(data.pos, data.pos, edge_index)
        h2 = self.conv2(h1, data.pos, edge_index)
        return self.head(torch.cat([h1, h2], dim=-1))


def ellipsoid(num_points: int, gen: torch.Generator, rotate: bool) -> Data:
    """Points on a random ellipsoid with their unit normals; axis-aligned unless ``rotate``."""
    axes = 0.5 + torch.rand(3, generator=gen, dtype=torch.float64)
    u = torch.randn(num_points, 3, generator=gen, dtype=torch.float64)
    pos = u / u.norm(dim=-1, keepdim=True) * axes
    normal = pos / axes**2
    normal = normal / normal.norm(dim=-1, keepdim=True)
    if rotate:
        R = random_rotation(generator=int(torch.randint(0, 2**31, (1,), generator=gen)))
        pos, normal = pos @ R.T + torch.randn(3, generator=gen, dtype=torch.float64), normal @ R.T
    return Data(pos=pos.float(), normal=normal.float())


def normal_error(pred: torch.Tensor, normal: torch.Tensor) -> torch.Tensor:
    """``1 - |cos|``: normals are unoriented."""
    cos = torch.nn.functional.cosine_similarity(pred, normal, dim=-1)
    return (1 - cos.abs()).mean()


def check_equivariance(nets: dict, data) -> None:
    print("Equivariance check (rotations, reflections, translations, permutations; float32):")
    for name, net in nets.items():
        model = FrameAveraging(net, outputs={"y": Output("vector", "node")})  # <- the wrapper
        errors = assert_equivariant(model, data, out_types={"y": "vector"})
        worst = max(max(e.values()) for e in errors.values())
        try:
            assert_equivariant(net, data, out_types={"y": "vector"})
            bare = "passes (unexpected)"
        except AssertionError:
            bare = "fails, as expected"
        print(f"  {name:<16} frame-averaged: passes, largest error {worst:.1e};  bare network: {bare}")


def train(model, train_set, test_set, steps: int, batch_size: int, gen: torch.Generator) -> tuple:
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(train_set), (batch_size,), generator=gen).tolist()
        batch = Batch.from_data_list([train_set[i] for i in idx])
        out = model(batch)
        pred = out["y"] if isinstance(out, dict) else out
        loss = normal_error(pred, batch.normal)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        scores = []
        for dataset in (train_set, test_set):
            batch = Batch.from_data_list(dataset)
            out = model(batch)
            scores.append(float(normal_error(out["y"] if isinstance(out, dict) else out, batch.normal)))
    return tuple(scores)


def main(quick: bool) -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    nets = {"EdgeConvNet": EdgeConvNet(), "PointNetConvNet": PointNetConvNet()}
    check_data = Batch.from_data_list([ellipsoid(n, gen, rotate=True) for n in (40, 55)])
    check_equivariance(nets, check_data)

    num_points, steps = (64, 3) if quick else (128, 150)
    train_set = [ellipsoid(num_points, gen, rotate=False) for _ in range(8 if quick else 64)]
    test_set = [ellipsoid(num_points, gen, rotate=True) for _ in range(4 if quick else 32)]
    print(f"\nNormal estimation, {len(train_set)} axis-aligned training ellipsoids, {len(test_set)} rotated test "
          f"ones, {num_points} points each, {steps} steps; error = mean(1 - |cos|):")
    for wrapped in (False, True):
        torch.manual_seed(1)
        net = EdgeConvNet()
        # stochastic: one random frame element per cloud while training (as cheap as the bare
        # network), the full average of all 8 in eval mode
        model = FrameAveraging(net, outputs={"y": Output("vector", "node")}, stochastic=True) if wrapped else net
        start = time.perf_counter()
        train_err, test_err = train(model, train_set, test_set, steps, 8, torch.Generator().manual_seed(2))
        label = "frame-averaged" if wrapped else "bare"
        print(f"  EdgeConvNet {label:<15} train {train_err:.3f}   rotated test {test_err:.3f}   "
              f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few training steps only (seconds)")
    main(parser.parse_args().quick)
