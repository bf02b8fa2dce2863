"""Energy models through the shared EnergyModelTests mixin: ForceField(EGNN) on molecules and
on periodic Cu cells (with and without an atom seeing its own images), with and without
coordinate updates."""
import pytest
import torch
from ase.build import bulk
from torch_geometric.data import Data

from equigraph.data import from_ase
from equigraph.models import EGNN, ForceField
from equigraph.testing import EnergyModelTests

# Finite differences need float64: every model and structure here is float64 whatever the
# default dtype, so the conftest's float32 run would repeat the float64 one.
pytestmark = pytest.mark.parametrize("dtype", [torch.float64], indirect=True, ids=["float64"])

BOX = 12.0  # a cell for the molecules (non-periodic), so that stress=True applies to them too


def _molecule(n, seed):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randint(1, 10, (n,), generator=gen)
    # a compact cluster (every atom has neighbours within the cutoff), no pair closer than 1 Å
    atoms = []
    while len(atoms) < n:
        x = 1.2 * torch.randn(3, generator=gen, dtype=torch.float64)
        if all(float((x - y).norm()) > 1.0 for y in atoms):
            atoms.append(x)
    pos = torch.stack(atoms)
    return Data(z=z, pos=pos, cell=BOX * torch.eye(3, dtype=torch.float64).unsqueeze(0),
                pbc=torch.zeros(1, 3, dtype=torch.bool))


def _copper(repeat, seed):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(repeat)
    atoms.rattle(stdev=0.1, seed=seed)
    return from_ase(atoms, dtype=torch.float64)


def _energy_model(cutoff, **kwargs):
    torch.manual_seed(0)
    egnn = EGNN(hidden_channels=16, num_layers=2, out_channels=1, reduce="sum", interaction_graph=cutoff,
                atom_ref=True, **kwargs)
    with torch.no_grad():
        # The default init gives energies ~1e-2 eV and forces ~1e-3 eV/Å; O(1) weights and
        # reference energies make every check meaningful in absolute terms.
        egnn.readout.node_net[2].weight.normal_(0.0, 1.0)
        egnn.readout.atom_ref.normal_(0.0, 1.0)
        for conv in egnn.convs:
            conv.edge_mlp[0].weight.mul_(2.0)
            if conv.coord_mlp is not None:
                conv.coord_mlp[2].weight.normal_(0.0, 0.3)
    return ForceField(egnn, stress=True).double().eval()


class TestEGNNForceField(EnergyModelTests):
    """Invariant EGNN (no coordinate updates), 3 Å cutoff; a 2x2x2 Cu supercell (7.2 Å):
    the cutoff is below half the cell, every neighbour is one image."""

    @pytest.fixture
    def model(self):
        return _energy_model(3.0, update_coords=False)

    @pytest.fixture
    def data_list(self):
        return [_molecule(4, 0), _molecule(6, 1)]

    @pytest.fixture
    def periodic_data(self):
        return _copper((2, 2, 2), 0)

    def test_outputs_are_not_tiny(self, model, data_list, periodic_data):
        out = model(periodic_data)
        assert float(out["forces"].abs().max()) > 0.1 and float(out["stress"].abs().max()) > 1e-3
        out = model(data_list[1])
        assert float(out["forces"].abs().max()) > 0.1


class TestEGNNForceFieldSelfImages(EnergyModelTests):
    """A 4 Å cutoff on the 3.6 Å cubic Cu cell: each atom sees its own periodic images and
    several images of every other atom."""

    @pytest.fixture
    def model(self):
        return _energy_model(4.0, update_coords=False)

    @pytest.fixture
    def data_list(self):
        return [_molecule(5, 2), _molecule(3, 3)]

    @pytest.fixture
    def periodic_data(self):
        return _copper((1, 1, 1), 1)

    def test_uses_self_images(self, model, periodic_data):
        edge_index, shift = model.interaction_graph.from_data(periodic_data)
        assert bool((edge_index[0] == edge_index[1]).any()) and bool((shift != 0).any())


class TestEGNNForceFieldCoords(EnergyModelTests):
    """EGNN with coordinate updates (mean aggregation, which the envelope makes smooth)."""

    @pytest.fixture
    def model(self):
        return _energy_model(3.0, update_coords=True, coords_agg="mean")

    @pytest.fixture
    def data_list(self):
        return [_molecule(6, 4), _molecule(4, 5)]

    @pytest.fixture
    def periodic_data(self):
        return _copper((1, 1, 1), 2)


# The kit must catch the defects it exists for, on the real model.
def test_lattice_check_catches_an_egnn_without_periodic_shifts(monkeypatch):
    from equigraph.graph import RadiusInteractionGraph
    from equigraph.testing import assert_lattice_invariant

    model, data = _energy_model(3.0, update_coords=False), _copper((1, 1, 1), 0)
    build = RadiusInteractionGraph.from_data

    def without_shifts(self, data):
        edge_index, shift = build(self, data)
        return edge_index, None if shift is None else torch.zeros_like(shift)

    monkeypatch.setattr(RadiusInteractionGraph, "from_data", without_shifts)
    with pytest.raises(AssertionError, match="'energy' changes when atom 0 moved"):
        assert_lattice_invariant(model, data)


def test_smoothness_check_catches_an_egnn_without_envelope():
    from equigraph.testing import assert_smooth_at_cutoff

    model = _energy_model(3.0, update_coords=False, envelope=False)
    with pytest.raises(AssertionError, match="'energy' jumps.*\n.*'forces' jumps"):
        assert_smooth_at_cutoff(model, _molecule(4, 0), 3.0, keys=["energy", "forces"])
