import torch

from equigraph.graph.brute_force import block_pairs, centre_chunks


def test_centre_chunks_cover_without_splitting():
    per = torch.tensor([3, 5, 2, 7, 1])
    chunks = centre_chunks(per, budget=6)
    assert chunks[0][0] == 0 and chunks[-1][1] == 5
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
    assert len(chunks) > 1 and centre_chunks(torch.zeros(0, dtype=torch.long)) == []


def test_block_pairs_all_pairs_with_images():
    batch = torch.tensor([0, 0, 2, 2, 2])  # graph 1 empty
    ptr = torch.tensor([0, 2, 2, 5])
    images = torch.tensor([2, 1, 1])
    out = [torch.stack(x, 1) for x in block_pairs(batch, ptr, images, budget=4)]
    got = torch.cat(out).tolist()
    expect = [[i, j, t] for i in range(2) for j in range(2) for t in range(2)]
    expect += [[i, j, 0] for i in range(2, 5) for j in range(2, 5)]
    assert got == expect
