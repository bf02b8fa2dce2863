import pytest
import torch

from equigraph.nn.frames import check_rotations, finite_group, octahedral_group


def _closed(G):
    products = (G.unsqueeze(1) @ G.unsqueeze(0)).reshape(-1, 9)
    return torch.cdist(products, G.reshape(-1, 9)).min(dim=1).values.max() < 1e-12


@pytest.mark.parametrize("name, order, dets", [("octahedral", 24, {1.0}), ("full_octahedral", 48, {1.0, -1.0})])
def test_octahedral_groups(name, order, dets):
    G = finite_group(name)
    assert G.shape == (order, 3, 3) and G.dtype == torch.float64
    assert torch.equal(G[0], torch.eye(3, dtype=torch.float64))
    assert set(torch.linalg.det(G).round().tolist()) == dets
    assert len({tuple(g.flatten().tolist()) for g in G}) == order
    assert _closed(G)
    assert torch.equal(octahedral_group(improper=name == "full_octahedral"), G)


def test_random_sample_is_reproducible():
    G = finite_group(5, seed=3)
    assert G.shape == (5, 3, 3) and torch.equal(G[0], torch.eye(3, dtype=torch.float64))
    assert torch.allclose(G @ G.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(5, 3, 3))
    assert torch.equal(G, finite_group(5, seed=3)) and not torch.equal(G, finite_group(5, seed=4))
    assert finite_group(1).shape == (1, 3, 3)


def test_given_matrices():
    R = finite_group("octahedral")[:3].float()
    assert torch.equal(finite_group(R), R.double())


@pytest.mark.parametrize("group, match", [
    ("icosahedral", "must be one of"),
    (0, "must be positive"),
    (2.5, "must be one of"),
    (torch.ones(2, 3, 3), "matrix 0 is not orthogonal"),
    (torch.eye(3), r"\[m, 3, 3\] tensor of orthogonal matrices, got \[3, 3\]"),
    (torch.zeros(0, 3, 3), "non-empty"),
])
def test_bad_groups(group, match):
    with pytest.raises(ValueError, match=match):
        finite_group(group)


def test_check_rotations_names_the_argument():
    with pytest.raises(ValueError, match="`rot`: matrix 1"):
        check_rotations(torch.stack([torch.eye(3), 2 * torch.eye(3)]), "rot")
