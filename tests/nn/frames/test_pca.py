import math
import warnings

import pytest
import torch

from equigraph.nn.frames import (
    DegeneracyCounter,
    DegenerateFrameWarning,
    default_tol,
    frame_signs,
    frame_size,
    local_pca_frames,
    pca_frames,
)
from equigraph.symmetry import GROUPS, random_o3, random_rotation

GROUP_NAMES = sorted(GROUPS)


def _copies(pos, frames, row=0):
    """Canonical coordinates of every frame element of graph ``row``: ``[F, N, 3]``."""
    t = frames.translations[row] if frames.translations is not None else torch.zeros(3, dtype=pos.dtype)
    return torch.einsum("nd,fde->fne", pos - t, frames.rotations[row])


@pytest.mark.parametrize("group", GROUP_NAMES)
def test_elements_are_signed_principal_axes(group, cloud, dtype):
    pos = cloud(10, 1)
    frames = pca_frames(pos, group=group)
    R = frames.rotations[0]
    assert R.shape == (frame_size(group), 3, 3) and R.dtype == dtype
    eye = torch.eye(3, dtype=dtype)
    assert torch.allclose(R.transpose(1, 2) @ R, eye.expand_as(R), atol=1e-5)
    dets = torch.linalg.det(R).round()
    if group in ("SE3", "SO3"):
        assert dets.eq(1).all()
    else:
        assert sorted(dets.tolist()) == [-1.0] * 4 + [1.0] * 4
    # every column is an eigenvector of the covariance with the listed, descending eigenvalue
    centred = pos - pos.mean(0) if group in ("E3", "SE3") else pos
    C = centred.T @ centred
    lam = frames.eigenvalues[0]
    assert (lam[:-1] >= lam[1:]).all()
    assert torch.allclose(C @ R, R * lam, atol=1e-4 * float(lam[0]))
    # the elements differ only by the signs of the axes, all distinct
    assert len({tuple(r.sign().flatten().tolist()) for r in R}) == R.size(0)


@pytest.mark.parametrize("group", GROUP_NAMES)
def test_frame_is_equivariant(group, cloud, dtype):
    pos = cloud(9, 2)
    proper = group in ("SE3", "SO3")
    Q = random_rotation(generator=3) if proper else random_o3(parity=True, generator=3)
    shift = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) if group in ("E3", "SE3") else torch.zeros(3)
    moved = (pos.double() @ Q.T + shift).to(dtype)
    a = _copies(pos, pca_frames(pos, group=group))
    b = _copies(moved, pca_frames(moved, group=group))
    # the same set of canonical copies, possibly in another order
    dist = torch.cdist(a.flatten(1).double(), b.flatten(1).double())
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    assert dist.min(dim=1).values.max() < tol
    assert dist.min(dim=0).values.max() < tol


def test_batched_equals_per_graph(cloud):
    graphs = [cloud(n, s) for n, s in ((5, 1), (8, 2), (3, 3))]
    pos = torch.cat(graphs)
    batch = torch.cat([torch.full((g.size(0),), i) for i, g in enumerate(graphs)])
    perm = torch.randperm(pos.size(0), generator=torch.Generator().manual_seed(0))  # any node order
    frames = pca_frames(pos[perm], batch[perm])
    assert frames.rotations.shape[:2] == (3, 8) and frames.translations.shape == (3, 3)
    for i, g in enumerate(graphs):
        alone = pca_frames(g)
        assert torch.allclose(frames.translations[i], alone.translations[0], atol=1e-5)
        assert torch.allclose(frames.eigenvalues[i], alone.eigenvalues[0], rtol=1e-4, atol=1e-5)
        # eigenvectors are defined up to sign, so compare the sets of elements
        dist = torch.cdist(frames.rotations[i].flatten(1), alone.rotations[0].flatten(1))
        assert dist.min(dim=1).values.max() < 1e-4


def test_groups_without_translations_use_the_origin(cloud):
    pos = cloud(6, 4)
    frames = pca_frames(pos, group="O3")
    assert frames.translations is None
    C = pos.T @ pos
    assert torch.allclose(C @ frames.rotations[0, 0], frames.rotations[0, 0] * frames.eigenvalues[0],
                          atol=1e-4 * float(frames.eigenvalues[0, 0]))


def test_gradient_through_the_frame(cloud):
    pos = cloud(7, 5).requires_grad_(True)
    frames = pca_frames(pos)
    canonical = torch.einsum("nd,fde->fne", pos - frames.translations[0], frames.rotations[0])
    (canonical[..., 0] ** 3).sum().backward()
    assert pos.grad is not None and torch.isfinite(pos.grad).all()


def test_planar_cloud_is_not_degenerate(cloud):
    pos = cloud(8, 6, variances=(9.0, 4.0, 1.0))
    pos = pos - pos.mean(0)
    pos[:, 2] = 0.0  # a plane: lambda_3 = 0 but the normal is a well-defined axis
    frames = pca_frames(pos)
    assert not frames.degenerate.any() and not frames.collinear.any()
    assert torch.allclose(frames.rotations[0, 0, :, 2].abs(), torch.tensor([0.0, 0, 1]), atol=1e-5)


@pytest.mark.parametrize("shape, degenerate, collinear", [
    ("collinear", False, True),
    ("coincident", False, True),
    ("tetrahedron", True, False),
    ("square", True, False),
])
def test_degenerate_spectra_are_flagged(shape, collinear, degenerate, cloud):
    points = {
        "collinear": [[0.0, 0, 0], [1, 1, 1], [2, 2, 2], [5, 5, 5]],
        "tetrahedron": [[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]],
        "square": [[1.0, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0], [0, 0, 0.3], [0, 0, -0.3]],
        "coincident": [[1.0, 2, 3]] * 3,
    }[shape]
    pos = torch.tensor(points)
    generic = cloud(6, 7)
    frames = pca_frames(torch.cat([pos, generic]), torch.tensor([0] * len(points) + [1] * 6))
    assert frames.degenerate.tolist() == [degenerate, False]
    assert frames.collinear.tolist() == [collinear, False]
    assert torch.isfinite(frames.rotations).all()


def test_tolerance(cloud):
    pos = cloud(6, 8, variances=(1.0, 0.999, 0.5))  # relative gap 1e-3
    assert not pca_frames(pos, tol=1e-4).degenerate.any()
    assert pca_frames(pos, tol=1e-2).degenerate.all()
    assert default_tol(torch.float64) == pytest.approx(math.sqrt(2.220446049250313e-16))


def test_frame_signs():
    assert frame_signs("E3").shape == (8, 3) and frame_signs("O3").shape == (8, 3)
    assert frame_signs("SE3").prod(dim=1).eq(1).all()
    assert frame_size("SO3") == 4


def test_select_one_element_per_row(cloud):
    pos = torch.cat([cloud(5, 1), cloud(6, 2)])
    frames = pca_frames(pos, torch.tensor([0] * 5 + [1] * 6))
    picked = frames.select(torch.tensor([3, 6]))
    assert picked.rotations.shape == (2, 1, 3, 3) and picked.size == 1
    assert torch.equal(picked.rotations[1, 0], frames.rotations[1, 6])
    assert torch.equal(picked.translations, frames.translations)


def test_local_frames_match_global_frames_of_each_neighbourhood(cloud):
    pos = cloud(8, 9)
    neighbours = torch.stack([torch.roll(torch.arange(8), -i)[:5] for i in range(8)])
    local = local_pca_frames(pos, neighbours)
    assert local.rotations.shape == (8, 8, 3, 3) and local.translations.shape == (8, 3)
    for i in range(8):
        alone = pca_frames(pos[neighbours[i]])
        assert torch.allclose(local.translations[i], alone.translations[0], atol=1e-5)
        assert torch.allclose(local.eigenvalues[i], alone.eigenvalues[0], rtol=1e-4, atol=1e-5)
    assert local_pca_frames(pos, neighbours, "SO3").rotations.shape == (8, 4, 3, 3)


def test_degeneracy_counter_warns_once_with_the_count():
    counter = DegeneracyCounter()
    mask = torch.tensor([True, False, True])
    assert counter.report_degenerate(None, "graphs", 1e-3) == 0
    with pytest.warns(DegenerateFrameWarning, match="2 of 3 graphs"):
        assert counter.report_degenerate(mask, "graphs", 1e-3) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        counter.report_degenerate(mask, "graphs", 1e-3)
    assert counter.num_degenerate == 4


@pytest.mark.parametrize("pos, batch, match", [
    (torch.zeros(2, 3), None, r"at least 3 points per graph; graph\(s\) \[0\] have \[2\]"),
    (torch.randn(5, 3), torch.tensor([0, 0, 0, 1, 1]), r"graph\(s\) \[1\] have \[2\]"),
    (torch.randn(4, 3), torch.tensor([0, 0, 0, 2]), r"graph\(s\) \[1, 2\] have \[0, 1\]"),
    (torch.zeros(0, 3), None, "has no points"),
    (torch.tensor([[0.0, 0, 0], [1, 0, 0], [float("nan"), 0, 0]]), None, "NaN"),
    (torch.zeros(4, 2), None, r"shape \[N, 3\]"),
])
def test_bad_positions(pos, batch, match):
    with pytest.raises(ValueError, match=match):
        pca_frames(pos, batch)


def test_bad_arguments(cloud):
    pos = cloud(5, 1)
    with pytest.raises(ValueError, match="`group` must be one of"):
        pca_frames(pos, group="E2")
    with pytest.raises(ValueError, match="`tol` must be a finite number"):
        pca_frames(pos, tol=-1.0)
    with pytest.raises(ValueError, match="refers to graph 1 but `num_graphs` is 1"):
        pca_frames(pos, torch.tensor([0, 0, 0, 1, 1]), num_graphs=1)
    with pytest.raises(ValueError, match=r"`neighbours` must be a \[N=5, k\]"):
        local_pca_frames(pos, torch.zeros(4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="at least 3 points per neighbourhood, got k = 2"):
        local_pca_frames(pos, torch.zeros(5, 2, dtype=torch.long))
