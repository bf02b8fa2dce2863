"""The replication and the mapping back on their own (the wrappers are tested in
tests/models/test_frame_averaging.py)."""
import pytest
import torch
from torch_geometric.data import Batch, Data

from equigraph.nn.frames import average_outputs, canonicalize, input_level, pca_frames


def _batch(cloud):
    graphs = []
    for n, seed in ((5, 1), (7, 2)):
        pos = cloud(n, seed)
        edge_index = torch.stack([torch.arange(n), torch.roll(torch.arange(n), 1)])
        graphs.append(Data(pos=pos, vel=torch.randn(n, 3), edge_index=edge_index,
                           edge_vec=pos[edge_index[0]] - pos[edge_index[1]], cell=torch.eye(3).unsqueeze(0)))
    return Batch.from_data_list(graphs)


TYPES = {"pos": ("point", None), "vel": ("vector", None), "cell": ("cell", None), "edge_vec": ("vector", "edge")}


def test_canonical_copies(cloud):
    data = _batch(cloud)
    frames = pca_frames(data.pos, data.batch, num_graphs=2)
    copies = canonicalize(data, frames, TYPES)
    assert copies.num_graphs == 16 and copies.pos.shape == (96, 3)
    # each copy is centred and its covariance is diagonal, descending
    for f in range(8):
        for g in range(2):
            pos = copies.pos[copies.batch == f * 2 + g]
            assert pos.mean(0).abs().max() < 1e-5
            C = pos.T @ pos
            assert (C - torch.diag(torch.diag(C))).abs().max() < 1e-4 * C.abs().max()
            assert (torch.diag(C)[:-1] >= torch.diag(C)[1:]).all()
    # geometry is preserved: edge vectors of canonical positions are the canonical edge vectors
    vec = copies.pos[copies.edge_index[0]] - copies.pos[copies.edge_index[1]]
    assert torch.allclose(vec, copies.edge_vec, atol=1e-5)
    assert copies.cell.shape == (16, 3, 3)


def test_identity_backbone_gives_the_inputs_back(cloud):
    data = _batch(cloud)
    frames = pca_frames(data.pos, data.batch, num_graphs=2)
    copies = canonicalize(data, frames, TYPES)
    raw = {"pos": copies.pos, "vel": copies.vel, "cell": copies.cell, "edge_vec": copies.edge_vec,
           "n": torch.ones(16, 1)}
    declared = {"pos": ("point", "node"), "vel": ("vector", "node"), "cell": ("cell", "graph"),
                "edge_vec": ("vector", "edge"), "n": ("scalar", "graph")}
    out = average_outputs(raw, frames, declared, data)
    for key in ("pos", "vel", "cell", "edge_vec"):
        assert torch.allclose(out[key], data[key], atol=1e-5), key
    assert torch.equal(out["n"], torch.ones(2, 1))


def test_input_levels(cloud):
    data = _batch(cloud)
    assert input_level(data, "pos", data.pos, None, 2) == "node"
    assert input_level(data, "cell", data.cell, None, 2) == "graph"
    assert input_level(data, "edge_vec", data.edge_vec, None, 2) == "edge"
    # as many nodes as edges: the name decides
    assert input_level(data, "vel", data.vel, None, 2) == "node"
    with pytest.raises(ValueError, match=r"input 'vel' is edge-level, so it needs 12 rows"):
        input_level(data, "vel", data.vel[:5], "edge", 2)
    with pytest.raises(ValueError, match="matches neither the 12 nodes, the 2 graphs nor the 12 edges"):
        input_level(data, "vel", data.vel[:5], None, 2)
    with pytest.raises(ValueError, match="level must be one of"):
        input_level(data, "vel", data.vel, "atom", 2)


def test_errors(cloud):
    data = _batch(cloud)
    frames = pca_frames(data.pos, data.batch, num_graphs=2)
    with pytest.raises(ValueError, match="input 'z' must be a floating-point tensor"):
        canonicalize(data, frames, {"z": ("vector", None)})
    with pytest.raises(ValueError, match=r"input 'vel' is declared 'pseudovector' but has shape \[12, 2\]"):
        canonicalize(Batch.from_data_list([Data(pos=data.pos[:6], vel=torch.zeros(6, 2))] * 2), frames,
                     {"vel": ("pseudovector", None)})
    with pytest.raises(ValueError, match="frames have 2 rows but the data has 1 graphs"):
        canonicalize(Data(pos=data.pos), frames, {})
    ok = {"y": ("vector", "node")}
    with pytest.raises(ValueError, match="returned 'h', which has no declared type"):
        average_outputs({"h": torch.zeros(96, 3)}, frames, ok, data)
    with pytest.raises(ValueError, match="must be a floating-point tensor to be averaged"):
        average_outputs({"y": torch.zeros(96, 3, dtype=torch.long)}, frames, ok, data)
    with pytest.raises(ValueError, match=r"declared node-level, so it needs 8 x 12 rows .* but has 16"):
        average_outputs({"y": torch.zeros(16, 3)}, frames, ok, data)
    with pytest.raises(ValueError, match=r"'y' is declared 'vector' but has shape \[96, 5\]"):
        average_outputs({"y": torch.zeros(96, 5)}, frames, ok, data)
    with pytest.raises(ValueError, match="declared edge-level but the data has no edge_index"):
        average_outputs({"y": torch.zeros(8, 3)}, frames, {"y": ("vector", "edge")}, Batch.from_data_list(
            [Data(pos=data.pos[:5]), Data(pos=data.pos[5:])]))
