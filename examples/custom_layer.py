r"""Writing a new equivariant layer and model, and testing them with ``equigraph.testing``.

    python examples/custom_layer.py            # checks, the EnergyModelTests suite, 30 epochs on EMT (minutes)
    python examples/custom_layer.py --quick    # checks, the suite, one epoch on a little EMT data (seconds)
    pytest examples/custom_layer.py            # the test class alone, as in your own suite

1. ``VectorConv``: a PyG ``MessagePassing`` layer with scalar and vector node features
   (a small PaiNN-like interaction). Its per-edge computation lives in ``message()``, the
   edge vectors come from ``equigraph.nn.edge_vec`` (periodic images included), and a smooth
   envelope fades every message out at the cutoff.
2. ``TinyPotential``: a model on equigraph's contract: it declares its outputs, checks its
   inputs with ``equigraph.models.inputs``, builds its graph with ``self.graph(data)`` and
   reads out through ``Readout`` (physical units, per-element references). It is registered,
   so a config can name it and ``ForceField`` turns it into energy + forces.
3. ``assert_equivariant`` proves the layer and the model equivariant and catches a broken
   variant; ``TestTinyPotential(EnergyModelTests)`` runs the physics suite (forces = -dE/dx,
   stress, lattice translations, smoothness at the cutoff, extensivity, batching).
4. ``equigraph.train.fit`` trains it on EMT energies and forces from a config.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict

import pytest
import torch
from ase.build import bulk
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.nn import MessagePassing

from equigraph.data import from_ase
from equigraph.data import keys as K
from equigraph.models import EquigraphModel, ForceField, Output, Readout, register_model, resolve_interaction_graph
from equigraph.models import inputs
from equigraph.models.registry import MODELS
from equigraph.nn import BesselBasis, PolynomialCutoff, edge_length_and_unit, edge_vec
from equigraph.testing import EnergyModelTests, assert_batch_consistent, assert_equivariant

ROOT = Path(__file__).resolve().parent.parent


class VectorConv(MessagePassing):
    r"""A scalar-vector interaction: with :math:`\mathbf{r}_{ij} = \mathbf{x}_j - \mathbf{x}_i
    + \mathbf{s}_{ij}\mathbf{L}`, :math:`r = \|\mathbf{r}_{ij}\|`, :math:`\hat{\mathbf{r}}_{ij}
    = \mathbf{r}_{ij} / r` and the envelope :math:`u(r)`,

    .. math::
        [\mathbf{a}_{ij}, \mathbf{b}_{ij}, \mathbf{c}_{ij}] = \phi(\mathbf{h}_j) \odot W e(r)\, u(r)

        \mathbf{h}_i' = \mathbf{h}_i + \sum_j \mathbf{a}_{ij}, \qquad
        \mathbf{V}_i' = \mathbf{V}_i + \sum_j \left(\mathbf{b}_{ij} \otimes \hat{\mathbf{r}}_{ij}
            + \mathbf{c}_{ij} \odot \mathbf{V}_j\right)

    with :math:`e(r)` a Bessel basis. Scalars :math:`\mathbf{h}` stay invariant, vectors
    :math:`\mathbf{V}` (``[N, F, 3]``) rotate with the input, and nothing depends on the
    absolute positions, so the layer is E(3)-equivariant (reflections included: the
    vectors are polar).

    Args:
        channels (int): Number of scalar channels and of vector channels.
        cutoff (float): Cutoff radius :math:`r_c`, Å.
        num_basis (int, optional): Bessel functions in :math:`e(r)`. (default: :obj:`8`)

    Shapes:
        - **input:** scalars :math:`(N, F)`, vectors :math:`(N, F, 3)`, edge vectors
          :math:`(E, 3)`, ``edge_index`` :math:`(2, E)` (``[0]`` neighbour, ``[1]`` centre)
        - **output:** scalars :math:`(N, F)`, vectors :math:`(N, F, 3)`

    Example:
        >>> conv = VectorConv(4, cutoff=3.0)
        >>> h, V = torch.randn(3, 4), torch.zeros(3, 4, 3)
        >>> edge_index = torch.tensor([[1, 2, 0, 0], [0, 0, 1, 2]])
        >>> vec = torch.randn(4, 3)
        >>> [t.shape for t in conv(h, V, vec, edge_index)]
        [torch.Size([3, 4]), torch.Size([3, 4, 3])]
    """

    def __init__(self, channels: int, cutoff: float, num_basis: int = 8, **kwargs):
        kwargs.setdefault("aggr", "add")
        super().__init__(**kwargs)
        self.channels = channels
        self.basis = BesselBasis(num_basis, cutoff)
        self.envelope = PolynomialCutoff(cutoff)
        self.filter = torch.nn.Linear(num_basis, 3 * channels)
        self.phi = torch.nn.Sequential(torch.nn.Linear(channels, channels), torch.nn.SiLU(),
                                       torch.nn.Linear(channels, 3 * channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.filter.reset_parameters()
        for layer in (self.phi[0], self.phi[2]):
            layer.reset_parameters()

    def forward(self, h: Tensor, V: Tensor, vec: Tensor, edge_index: Tensor):
        length, unit = edge_length_and_unit(vec)
        weight = self.filter(self.basis(length)) * self.envelope(length)[:, None]
        out = self.propagate(edge_index, h=h, V=V.flatten(1), weight=weight, unit=unit)
        F = self.channels
        return h + out[:, :F], V + out[:, F:].view(-1, F, 3)

    def message(self, h_j: Tensor, V_j: Tensor, weight: Tensor, unit: Tensor) -> Tensor:
        a, b, c = (self.phi(h_j) * weight).chunk(3, dim=-1)
        vectors = b[:, :, None] * unit[:, None, :] + c[:, :, None] * V_j.view(-1, self.channels, 3)
        return torch.cat([a, vectors.flatten(1)], dim=-1)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.channels}, cutoff={self.envelope.cutoff})"


class TinyPotential(EquigraphModel):
    """``num_layers`` :class:`VectorConv` layers on an embedding of ``data.z``, then an
    energy per atom from the invariants :math:`[\\mathbf{h}_i, \\|\\mathbf{V}_i\\|^2]`,
    summed per structure by :class:`~equigraph.models.Readout` (with per-element
    references, so the trainer can fit them)."""

    def __init__(self, channels: int = 16, num_layers: int = 2, cutoff: float = 4.0, max_z: int = 100):
        super().__init__()
        self.max_z = max_z
        self.interaction_graph = resolve_interaction_graph(cutoff)
        self.embedding = torch.nn.Embedding(max_z, channels)
        self.layers = torch.nn.ModuleList(VectorConv(channels, cutoff) for _ in range(num_layers))
        self.readout = Readout(2 * channels, 1, reduce="sum", max_z=max_z)

    @property
    def outputs(self) -> Dict[str, Output]:
        return {K.H: Output("scalar", "node"), "V": Output("vector", "node"),
                K.Y: Output("scalar", "graph"), K.NODE_Y: Output("scalar", "node")}

    def normalizer(self, key: str):
        return self.readout if key == K.Y else None

    def forward(self, data) -> Dict[str, Tensor]:
        pos = inputs.positions(data, self.embedding.weight.dtype)
        z = inputs.atomic_numbers(data, self.max_z, pos.size(0))
        batch = getattr(data, K.BATCH, None)
        edge_index, shift, cell = self.graph(data)
        vec = edge_vec(pos, edge_index, shift, cell, batch)
        h = self.embedding(z)
        V = h.new_zeros(h.size(0), h.size(1), 3)
        for layer in self.layers:
            h, V = layer(h, V, vec, edge_index)
        num_graphs = getattr(data, "num_graphs", None) if batch is not None else 1
        y, node_y = self.readout(torch.cat([h, V.square().sum(-1)], -1), batch, num_graphs, z=z,
                                 return_nodes=True)
        return {K.H: h, "V": V, K.Y: y, K.NODE_Y: node_y}


# `pytest examples/custom_layer.py` imports this file a second time, as a module: register once.
if "tiny_potential" not in MODELS:
    register_model("tiny_potential")(TinyPotential)


class BrokenConv(VectorConv):
    """A mistake worth catching: the vectors are built from the neighbour's absolute
    position instead of the edge vector, so the layer is not translation equivariant."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pos = None

    def message(self, h_j, V_j, weight, unit, edge_index_j):
        a, b, c = (self.phi(h_j) * weight).chunk(3, dim=-1)
        return torch.cat([a, (b[:, :, None] * self.pos[edge_index_j][:, None, :]).flatten(1)], -1)


# --------------------------------------------------------------------------- test data
def water() -> Data:
    pos = torch.tensor([[0.0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]], dtype=torch.float64)
    return Data(z=torch.tensor([8, 1, 1]), pos=pos)


def carbon_monoxide() -> Data:
    return Data(z=torch.tensor([6, 8]), pos=torch.tensor([[0.0, 0, 0], [1.13, 0.1, 0]], dtype=torch.float64))


def copper() -> Data:
    data = from_ase(bulk("Cu", "fcc", a=3.6, cubic=True), dtype=torch.float64)
    data.pos = data.pos + 0.05 * torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    return data


def potential() -> ForceField:
    torch.manual_seed(0)
    return ForceField(TinyPotential(channels=8, num_layers=2, cutoff=3.0)).double().eval()


class TestTinyPotential(EnergyModelTests):
    """The physics suite every equigraph energy model passes, inherited as it is."""

    @pytest.fixture
    def model(self):
        return potential()

    @pytest.fixture
    def data_list(self):
        return [water(), carbon_monoxide()]

    @pytest.fixture
    def periodic_data(self):
        return copper()


# --------------------------------------------------------------------------- the walk-through
def check_layer_and_model() -> None:
    torch.manual_seed(0)
    graphs = [water(), carbon_monoxide()]
    data = water()
    edge_index = torch.tensor([[1, 2, 0, 0, 1, 2], [0, 0, 1, 2, 2, 1]])

    conv = VectorConv(4, cutoff=3.0).double()
    h0 = torch.randn(3, 4, dtype=torch.float64)

    def layer(d):  # the layer on its own: vectors start from the edge directions
        h, V = conv(h0, torch.zeros(3, 4, 3, dtype=torch.float64), edge_vec(d.pos, edge_index), edge_index)
        return {"h": h, "V": V}

    errors = assert_equivariant(layer, data, out_types={"h": "scalar", "V": "vector"}, permutation=False)
    print(f"VectorConv: equivariant, largest error {max(max(e.values()) for e in errors.values()):.1e}")

    broken = BrokenConv(4, cutoff=3.0).double()

    def broken_layer(d):
        broken.pos = d.pos
        h, V = broken(h0, torch.zeros(3, 4, 3, dtype=torch.float64), edge_vec(d.pos, edge_index), edge_index)
        return {"h": h, "V": V}

    try:
        assert_equivariant(broken_layer, data, out_types={"h": "scalar", "V": "vector"}, permutation=False)
    except AssertionError as err:
        print(f"BrokenConv: caught, {str(err).splitlines()[1].strip()}")
    else:
        raise RuntimeError("the broken layer should have failed the translation check")

    model = TinyPotential(channels=8, num_layers=2, cutoff=3.0).double().eval()
    errors = assert_equivariant(model, data)  # types and levels from model.outputs
    assert_batch_consistent(model, graphs)
    print(f"TinyPotential: declared outputs {sorted(model.outputs)}; equivariant (E3 + permutations) and "
          f"batch-consistent, largest error {max(max(e.values()) for e in errors.values()):.1e}")


def run_test_suite() -> int:
    print("\nEnergyModelTests on ForceField(TinyPotential):")
    return pytest.main([__file__, "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-W", "ignore::DeprecationWarning"])


def train(quick: bool, out: str) -> None:
    from equigraph.train import fit

    config = {
        "seed": 0,
        "out_dir": out,
        "model": {"name": "force_field", "model": {"name": "tiny_potential", "channels": 16, "cutoff": 4.0}},
        "data": {"name": "emt", "num_structures": 40 if quick else 400, "batch_size": 8},
        "targets": {"energy": {"loss": "mse", "metric_unit": "meV"},
                    "forces": {"loss": "mse", "weight": 10.0, "metric_unit": "meV"}},
        "train": {"max_epochs": 1 if quick else 30, "lr": 2e-3, "accelerator": "cpu", "progress_bar": False},
    }
    result = fit(config)
    m = result.metrics
    print(f"\nTinyPotential on EMT ({result.num_train} structures, {result.epochs} epochs): test energy MAE "
          f"{m['energy']['test_mae']:.1f} {m['energy']['unit']}, forces {m['forces']['test_mae']:.1f} "
          f"{m['forces']['unit']}; saved to {result.model_file}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one epoch on a little EMT data (seconds)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "examples" / "tiny_potential"))
    args = parser.parse_args(argv)
    check_layer_and_model()
    status = run_test_suite()
    if status != 0:
        return int(status)
    train(args.quick, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
