"""Edges brought by the data must lie within the envelope's cutoff (else silently zeroed)."""
import pytest
import torch
from torch_geometric.data import Data

from equigraph.models import EGNN, SEGNN, inputs


def _data(length):
    pos = torch.tensor([[0.0, 0.0, 0.0], [length, 0.0, 0.0]])
    return Data(pos=pos, z=torch.tensor([1, 6]), edge_index=torch.tensor([[0, 1], [1, 0]]))


@pytest.mark.parametrize("build", [lambda: EGNN(hidden_channels=8, num_layers=1, interaction_graph=3.0),
                                   lambda: SEGNN(hidden_channels=8, num_layers=1, interaction_graph=3.0)])
def test_supplied_edges_beyond_the_cutoff_are_an_error(build):
    model = build()
    model(_data(2.9))  # within: fine
    with pytest.raises(ValueError, match=r"data.edge_index has an edge of length 3.5 Å, beyond the model's cutoff 3 Å"):
        model(_data(3.5))
    with inputs.trusted():  # a split checked once: no per-batch synchronisation
        model(_data(3.5))


def test_models_without_envelope_take_any_supplied_edge():
    EGNN(hidden_channels=8, num_layers=1, interaction_graph=3.0, envelope=False)(_data(3.5))
    EGNN(hidden_channels=8, num_layers=1, interaction_graph="full")(_data(30.0))
