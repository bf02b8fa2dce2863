"""One cutoff rule for every radius backend (equigraph/graph/cutoff.py).

Pairs placed within 1e-8..1e-4 Å of the cutoff at coordinates as large as those of a
million-atom cell (an fcc Cu supercell of 1,000,188 atoms is 227 Å wide; here 350-361 Å):
brute force, the cell list, vesin and ``"auto"`` must return the very edges and shifts of
the float64 rule written out below, in float32 as in float64.
"""
import itertools

import numpy as np
import pytest
import torch
from ase.build import bulk

from equigraph.graph import periodic_radius_graph, radius_graph
from equigraph.graph.coincidence import CoincidentEdge
from equigraph.graph.cutoff import CutoffRule, reference_sq_dist

R = 5.0
L = 361.0  # cubic cell, 100 fcc Cu cells of a = 3.61 Å
BACKENDS = ["brute", "cell_list", "vesin", "auto"]
DTYPES = [torch.float32, torch.float64]
PBC = torch.tensor([True, True, True])


def _rule_d2(p, length=None):
    """The documented rule, spelled out in numpy float64: ``{(i, j, S) : (v_x^2 + v_y^2) +
    v_z^2 < r^2}`` with ``v = (p_j - p_i) + ((S_0 c_0 + S_1 c_1) + S_2 c_2)``, for a cubic
    cell of edge ``length`` (``c_k = length e_k``) larger than ``2 R``: there ``S`` can only
    be the nearest image."""
    v = p[None, :, :] - p[:, None, :]  # v[i, j] = p_j - p_i
    s = np.zeros_like(v)
    if length is not None:
        s = -np.round(v / length)
        c = np.eye(3) * length
        v = v + ((s[..., 0:1] * c[0] + s[..., 1:2] * c[1]) + s[..., 2:3] * c[2])
    d2 = (v[..., 0] * v[..., 0] + v[..., 1] * v[..., 1]) + v[..., 2] * v[..., 2]
    mask = d2 < R * R
    np.fill_diagonal(mask, False)
    i, j = np.nonzero(mask)
    return {(a, b, tuple(int(x) for x in s[a, b])) for a, b in zip(i.tolist(), j.tolist())}


def _near_pairs(dtype, n_pairs, seed, periodic):
    """``2 n_pairs`` positions in pairs ``(2k, 2k+1)`` whose float64 distance (through the
    nearest periodic image) sits within ``1e-8..1e-4`` Å (float32) or ``1e-15..1e-9`` Å
    (float64) of ``R``, either side. The partner is moved over its own ``dtype`` grid
    (+-4 ulps per coordinate) to the point closest to the target distance."""
    rng = np.random.default_rng(seed)
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    lo, hi = (-8, -4) if dtype == torch.float32 else (-15, -9)
    target = R + rng.choice([-1.0, 1.0], n_pairs) * 10.0 ** rng.uniform(lo, hi, n_pairs)
    u = rng.normal(size=(n_pairs, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    if periodic:
        # centres next to a face, partners across it: every pair crosses the boundary;
        # a third of the atoms are given one cell below (negative coordinates, so that
        # wrapping them into the cell rounds)
        ci = rng.uniform(0, L, (n_pairs, 3))
        axis = rng.integers(0, 3, n_pairs)
        rows = np.arange(n_pairs)
        ci[rows, axis] = L - rng.uniform(0, 4.0, n_pairs)
        u[rows, axis] = np.abs(u[rows, axis]) + 0.5
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        cj = np.mod(ci + target[:, None] * u, L)
        ci[rng.random(n_pairs) < 0.33] -= L
        cj[rng.random(n_pairs) < 0.33] -= L
    else:
        ci = 350.0 + rng.uniform(0, 60.0, (n_pairs, 3))
        cj = ci + target[:, None] * u
    ci, cj = ci.astype(np_dtype), cj.astype(np_dtype)
    k = np.array(list(itertools.product(range(-4, 5), repeat=3)), dtype=np.float64)
    cand = (cj[:, None, :].astype(np.float64) + k[None] * np.spacing(cj)[:, None, :].astype(np.float64))
    cand = cand.astype(np_dtype).astype(np.float64)
    v = cand - ci[:, None, :].astype(np.float64)
    if periodic:
        v = v - np.round(v / L) * L
    d = np.sqrt((v[..., 0] * v[..., 0] + v[..., 1] * v[..., 1]) + v[..., 2] * v[..., 2])
    best = np.abs(d - target[:, None]).argmin(axis=1)
    cj = cand[np.arange(n_pairs), best].astype(np_dtype)
    pos = np.empty((2 * n_pairs, 3), dtype=np_dtype)
    pos[0::2], pos[1::2] = ci, cj
    return torch.from_numpy(pos)


def _triples(edge_index, shift=None):
    if shift is None:
        return set(zip(edge_index[1].tolist(), edge_index[0].tolist(), [(0, 0, 0)] * edge_index.size(1)))
    return set(zip(edge_index[1].tolist(), edge_index[0].tolist(), map(tuple, shift.long().tolist())))


def _near(pos, got, cell=None):
    """Distances from R of the edges in ``got`` (for the failure message)."""
    p = pos.double().numpy()
    out = []
    for i, j, s in sorted(got)[:5]:
        v = p[j] - p[i] + (np.asarray(s, dtype=np.float64) @ cell if cell is not None else 0.0)
        out.append(float(np.sqrt((v * v).sum()) - R))
    return out


@pytest.mark.parametrize("dtype", DTYPES)
def test_open_large_coordinates_all_backends_follow_the_float64_rule(dtype):
    pos = _near_pairs(dtype, 300, seed=1, periodic=False)
    near = pos[1::2].double() - pos[0::2].double()
    gap = (near.norm(dim=1) - R).abs()
    assert float(gap.max()) < 1e-4 and int((gap < 1e-6).sum()) > 50  # the test is as hard as it says
    expect = _rule_d2(pos.double().numpy())
    first = None
    for backend in BACKENDS:
        ei = radius_graph(pos, R, backend=backend)
        got = _triples(ei)
        assert got == expect, (backend, _near(pos, got ^ expect))
        if first is None:
            first = ei
        assert torch.equal(ei, first), backend


@pytest.mark.parametrize("dtype", DTYPES)
def test_periodic_large_cell_all_backends_follow_the_float64_rule(dtype):
    pos = _near_pairs(dtype, 200, seed=2, periodic=True)
    cell = torch.eye(3, dtype=dtype) * L
    expect = _rule_d2(pos.double().numpy(), L)
    assert len(expect) >= 150 and any(s != (0, 0, 0) for _, _, s in expect)
    first = None
    for backend in BACKENDS:
        ei, shift = periodic_radius_graph(pos, R, cell, PBC, backend=backend)
        assert shift.dtype == dtype
        got = _triples(ei, shift)
        assert got == expect, (backend, _near(pos, got ^ expect, cell.double().numpy()))
        if first is None:
            first = (ei, shift)
        assert torch.equal(ei, first[0]) and torch.equal(shift, first[1]), backend


def test_batched_and_capped_follow_the_rule():
    """A batch (two copies, one shuffled in) and a neighbour cap: the same rule decides."""
    pos = _near_pairs(torch.float32, 60, seed=3, periodic=True)
    n = pos.size(0)
    cell = (torch.eye(3) * L).expand(2, 3, 3)
    both = torch.cat([pos, pos])
    batch = torch.arange(2).repeat_interleave(n)
    perm = torch.randperm(2 * n, generator=torch.Generator().manual_seed(0))
    one = _rule_d2(pos.double().numpy(), L)
    expect = one | {(i + n, j + n, s) for i, j, s in one}
    for backend in BACKENDS:
        ei, shift = periodic_radius_graph(both[perm], R, cell, PBC.expand(2, 3), batch[perm], backend=backend)
        assert _triples(perm[ei], shift) == expect, backend
        capped = periodic_radius_graph(both[perm], R, cell, PBC.expand(2, 3), batch[perm], backend=backend,
                                       max_num_neighbors=64)
        assert torch.equal(capped[0], ei) and torch.equal(capped[1], shift), backend


def _coincident_across_face(gaps, dtype=torch.float32):
    """Pairs ``(g/2, y, z)`` and ``(-g/2, y, z)`` on either side of the x face of the large
    cell, in ``dtype``: wrapping the second into the cell (``L - g/2``) rounds it to the
    coarse grid of float32 numbers near 361, whereas the float64 distance of the given
    positions is ``g`` up to their own fine rounding. Returns positions and distances."""
    pos = []
    for k, gap in enumerate(gaps):
        y = 10.0 + 8.0 * k
        pos += [[gap / 2, y, 30.0], [-gap / 2, y, 30.0]]
    pos = torch.tensor(pos, dtype=dtype)
    return pos, pos[0::2, 0].double() - pos[1::2, 0].double()


def test_coincidence_decided_by_the_float64_distance():
    md = 1e-4
    rng = np.random.default_rng(4)
    pos, d = _coincident_across_face(rng.uniform(1.0e-4, 1.3e-4, 40).tolist())
    pos, d = pos[torch.repeat_interleave(d > md, 2)], d[d > md]  # every pair just above md
    assert d.numel() > 20 and float(d.min()) < 1.05e-4
    cell = torch.eye(3) * L
    for backend in BACKENDS:
        ei, _ = periodic_radius_graph(pos, R, cell, PBC, backend=backend, min_distance=md)
        assert ei.size(1) == 2 * d.numel(), backend
    # one pair just below: every backend names that pair, with its float64 distance
    low, dl = _coincident_across_face([9.6e-5])
    assert float(dl) < md
    both = torch.cat([pos, low + torch.tensor([0.0, 0.0, 100.0])])
    k = pos.size(0)
    for backend in BACKENDS:
        with pytest.raises(ValueError, match=rf"atoms {k} and {k + 1} coincide \(distance {float(dl):.3g} Å"):
            periodic_radius_graph(both, R, cell, PBC, backend=backend, min_distance=md)


def test_rule_margin_decisions_and_reference():
    # atom 1 sits 6.1e-5 Å (one float32 step) above atom 0; atom 2 exactly R from atom 0
    pos = torch.tensor([[350.0, 350.0, 350.0], [350.0, 350.0, 350.00006], [354.0, 353.0, 350.0]])
    rule = CutoffRule(pos, R, 1e-4)
    # float32 at 350 Å: a margin of ~1e-3 Å, far below the cutoff and far above the
    # rounding of any backend (test_margin_covers_every_backend)
    assert 1e-4 < rule.eps < 1e-2 and rule.search_r == R + rule.eps and rule.hi2 == rule.search_r ** 2
    assert CutoffRule(pos.double(), R).eps < 1e-10
    c, j = torch.tensor([0, 2]), torch.tensor([2, 0])
    assert reference_sq_dist(pos.double(), c, j).tolist() == [25.0, 25.0]
    # exactly at r is out, whichever side the backend's own distance fell
    assert rule.decide(c, j, None, torch.tensor([24.9999, 25.0001])).tolist() == [False, False]
    assert rule.decide(c, j, None, torch.tensor([4.9999, 5.0001], dtype=torch.float64),
                       squared=False).tolist() == [False, False]
    # surely inside (below r - eps by the backend's distance): kept without a second look
    assert rule.decide(c, j, None, torch.tensor([1.0, 16.0])).tolist() == [True, True]
    with pytest.raises(CoincidentEdge) as err:
        rule.decide(torch.tensor([0]), torch.tensor([1]), None, torch.tensor([0.0]))
    assert (err.value.centre, err.value.neighbour) == (0, 1) and abs(err.value.distance - 6.1035e-5) < 1e-8
    # local indices of a graph starting at node 1: the pair (1, 2), not coincident
    assert rule.decide(torch.tensor([0]), torch.tensor([1]), None, torch.tensor([0.0]), base=1).tolist() == [True]
    cell = torch.eye(3, dtype=torch.float64) * L
    s = torch.tensor([[-1.0, 0, 0], [1.0, 0, 0]], dtype=torch.float64)
    d2 = reference_sq_dist(pos.double(), c, j, s, cell.expand(1, 3, 3), torch.zeros(3, dtype=torch.long))
    assert d2.tolist() == [(L - 4) ** 2 + 9, (L - 4) ** 2 + 9]


@pytest.mark.parametrize("dtype", DTYPES)
def test_margin_covers_every_backend(dtype, monkeypatch):
    """Each backend's own distance stays far inside the margin around the float64
    formula: a guard for later changes to a backend's arithmetic."""
    worst = {}
    decide = CutoffRule.decide

    def spy(self, centre, neighbour, shift, dist, base=0, squared=True):
        ref = self.sq_dist(centre.long() + base, neighbour.long() + base, shift).sqrt()
        own = dist.double().clamp(min=0)
        own = own.sqrt() if squared else own
        if ref.numel():
            worst[backend] = max(worst.get(backend, 0.0), float((own - ref).abs().max()) / self.eps)
        return decide(self, centre, neighbour, shift, dist, base, squared)

    monkeypatch.setattr(CutoffRule, "decide", spy)
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(4)
    atoms.rattle(0.05, seed=0)
    pos = torch.tensor(atoms.positions, dtype=dtype) + torch.tensor([350.0, -700.0, 120.0], dtype=dtype)
    cell = torch.tensor(atoms.cell.array) @ torch.tensor([[1.0, 0, 0], [0.3, 1, 0], [0.2, -0.4, 1]],
                                                         dtype=torch.float64)  # triclinic
    for backend in ["brute", "cell_list", "vesin"]:
        radius_graph(pos, R, backend=backend)
        periodic_radius_graph(pos, R, cell.to(dtype), PBC, backend=backend)
        periodic_radius_graph(pos, R, cell.to(dtype), torch.tensor([True, True, False]), backend=backend)
    assert set(worst) == {"brute", "cell_list", "vesin"}
    assert max(worst.values()) < 0.25, worst  # measured: < 0.015


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_backends_follow_the_rule_even_with_tf32():
    pos = _near_pairs(torch.float32, 200, seed=2, periodic=True)
    cell = torch.eye(3) * L
    expect = _rule_d2(pos.double().numpy(), L)
    open_pos = _near_pairs(torch.float32, 300, seed=1, periodic=False)
    open_expect = _rule_d2(open_pos.double().numpy())
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True  # float32 products at 10-bit mantissa
    try:
        for backend in ["brute", "cell_list", "auto"]:
            ei, shift = periodic_radius_graph(pos.cuda(), R, cell.cuda(), PBC.cuda(), backend=backend)
            assert _triples(ei.cpu(), shift.cpu()) == expect, backend
            assert _triples(radius_graph(open_pos.cuda(), R, backend=backend).cpu()) == open_expect, backend
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
