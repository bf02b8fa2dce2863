import math

import pytest
import torch

from equigraph.data import keys as K
from equigraph.datasets.point_clouds import (
    NORMAL,
    SURFACE_KINDS,
    NormalFiles,
    SurfaceNormals,
    random_rotations,
    read_normals_file,
    sample_surface,
    surface_normals_splits,
)


def _pca_normal_error(pos, normal, k=10):
    """Median of 1 - (n . n_pca)^2 against the smallest principal axis of each point's k
    nearest points: the exact normals must agree with the geometry of the cloud."""
    idx = torch.cdist(pos, pos).topk(k, largest=False).indices
    nb = pos[idx] - pos[idx].mean(dim=1, keepdim=True)
    axis = torch.linalg.eigh(nb.transpose(1, 2) @ nb).eigenvectors[..., 0]
    return float((1 - (axis * normal).sum(1).square()).median())


@pytest.mark.parametrize("kind", SURFACE_KINDS)
def test_surfaces_have_exact_unit_normals(kind):
    pos, normal = sample_surface(kind, 512, torch.Generator().manual_seed(1))
    assert pos.shape == normal.shape == (512, 3) and pos.dtype == torch.float64
    assert torch.allclose(normal.norm(dim=1), torch.ones(512, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(pos.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-12)
    assert pos.norm(dim=1).max() == pytest.approx(1.0)
    assert torch.unique(pos, dim=0).size(0) == 512  # drawn without replacement
    assert _pca_normal_error(pos, normal) < 0.05


def test_sphere_normals_are_radial_and_closed_surfaces_outward():
    pos, normal = sample_surface("sphere", 128, torch.Generator().manual_seed(0))
    # pos = c + rho n for one centre c and radius rho (the centroid of the sample is not c)
    A = torch.cat([torch.eye(3, dtype=pos.dtype).repeat(128, 1), normal.reshape(-1, 1)], dim=1)
    fit = torch.linalg.lstsq(A, pos.reshape(-1, 1)).solution
    assert float((A @ fit - pos.reshape(-1, 1)).abs().max()) < 1e-12 and float(fit[3]) > 0.9
    for kind in ("sphere", "ellipsoid", "blob", "cylinder", "superquadric"):
        pos, normal = sample_surface(kind, 128, torch.Generator().manual_seed(2), deform=False)
        assert float((normal * pos).sum(1).min()) > 0, kind  # star-shaped about the centroid


def test_area_weighted_sampling_is_uniform_on_a_sphere():
    # a plain (u, v) grid would crowd the poles: |z| is uniform on the sphere by area
    pos, _ = sample_surface("sphere", 2000, torch.Generator().manual_seed(3))
    counts = torch.histc(pos[:, 2].abs(), bins=4, min=0, max=1)
    assert float(counts.min()) > 0.8 * 500


def test_deterministic_and_prefix(tmp_path):
    a = SurfaceNormals(root=False, num_shapes=3, num_points=32, seed=4)
    b = SurfaceNormals(root=False, num_shapes=5, num_points=32, seed=4)
    assert all(torch.equal(a[i].pos, b[i].pos) and torch.equal(a[i][NORMAL], b[i][NORMAL]) for i in range(3))
    assert not torch.equal(SurfaceNormals(root=False, num_shapes=1, num_points=32, seed=5)[0].pos, a[0].pos)
    assert [SURFACE_KINDS[int(b[i].kind)] for i in range(5)] == list(SURFACE_KINDS[:5])


def test_cache_roundtrip(tmp_path):
    ds = SurfaceNormals(root=tmp_path, num_shapes=2, num_points=16, kinds=["torus"], dtype=torch.float64)
    assert ds.path.is_file() and ds.path.parent == tmp_path
    again = SurfaceNormals(root=tmp_path, num_shapes=2, num_points=16, kinds=["torus"], dtype=torch.float64)
    assert torch.equal(again[1].pos, ds[1].pos) and again[1].pos.dtype == torch.float64
    assert ds[-1].pos.shape == (16, 3) and "2 shapes" in repr(ds)
    seen = SurfaceNormals(root=tmp_path, num_shapes=2, num_points=16, kinds=["torus"],
                          transform=lambda d: d.update({"seen": True}) or d)
    assert seen[0].seen and seen[0].pos.dtype == torch.float32


@pytest.mark.parametrize("kwargs, match", [
    ({"num_shapes": 0}, "num_shapes"), ({"num_points": 2}, "num_points"), ({"seed": -1}, "seed"),
    ({"kinds": ["cube"]}, "kinds"), ({"kinds": []}, "kinds"), ({"dtype": torch.int64}, "dtype"),
])
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SurfaceNormals(root=False, **{"num_shapes": 1, "num_points": 8, **kwargs})


def test_bad_sample_arguments():
    with pytest.raises(ValueError, match="kind: unknown surface 'cube'"):
        sample_surface("cube")
    with pytest.raises(ValueError, match="num_points"):
        sample_surface("sphere", 2)
    with pytest.raises(IndexError):
        SurfaceNormals(root=False, num_shapes=1, num_points=8)[1]


def test_random_rotations():
    R = random_rotations(16, torch.Generator().manual_seed(0))
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3, dtype=R.dtype).expand(16, 3, 3), atol=1e-12)
    assert torch.allclose(torch.linalg.det(R), torch.ones(16, dtype=R.dtype))


# ---------------------------------------------------------------- files
def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_read_six_columns_with_comments(tmp_path):
    f = _write(tmp_path / "a.xyz", ["# x y z nx ny nz", "0 0 0 0 0 2", "", "1,0,0, 3,0,0  # a comment"])
    data = read_normals_file(f)
    assert data[K.POS].tolist() == [[0, 0, 0], [1, 0, 0]]
    assert data[NORMAL].tolist() == [[0, 0, 1], [1, 0, 0]]  # normalised
    assert data[K.POS].dtype == torch.float32


def test_read_pcpnet_pair(tmp_path):
    f = _write(tmp_path / "b.xyz", ["0 0 0", "1 1 1"])
    _write(tmp_path / "b.normals", ["0 1 0", "0 0 -1"])
    data = read_normals_file(f, dtype=torch.float64)
    assert data[NORMAL].tolist() == [[0, 1, 0], [0, 0, -1]] and data[K.POS].dtype == torch.float64


@pytest.mark.parametrize("lines, match", [
    (["0 0 0 0 0 1", "0 0 0 1"], "line 2 has 4 values, expected 6"),
    (["0 0 0 0 0 1", "0 0 x 0 0 1"], "line 2 is not numeric"),
    (["0 0 nan 0 0 1"], "line 1 has a NaN or inf"),
    (["0 0 0 0 0 1", "1 0 0 0 0 0"], "point 1 has a zero normal"),
    (["# nothing"], "no points"),
    (["0 0 0"], "no c.normals beside it"),
])
def test_read_errors(tmp_path, lines, match):
    with pytest.raises(ValueError, match=match):
        read_normals_file(_write(tmp_path / "c.xyz", lines))


def test_read_error_lengths_and_missing(tmp_path):
    f = _write(tmp_path / "d.xyz", ["0 0 0", "1 1 1"])
    _write(tmp_path / "d.normals", ["0 1 0"])
    with pytest.raises(ValueError, match="1 normals for 2 points"):
        read_normals_file(f)
    with pytest.raises(ValueError, match="no such file"):
        read_normals_file(tmp_path / "missing.xyz")


def test_folder_of_shapes(tmp_path):
    for name, shift in (("s2.txt", 2.0), ("s1.xyz", 1.0)):
        _write(tmp_path / name, [f"{shift + i} 0 0 0 1 0" for i in range(6)])
    _write(tmp_path / "notes.md", ["not a shape"])
    ds = NormalFiles(tmp_path)
    assert len(ds) == 2 and [p.name for p in ds.paths] == ["s1.xyz", "s2.txt"]
    sub = NormalFiles(tmp_path, files=["s2.txt"], num_points=4, seed=1)
    assert len(sub) == 1 and sub[0][K.POS].shape == (4, 3) and float(sub[0][K.POS][:, 0].min()) >= 2
    with pytest.raises(ValueError, match="6 points, fewer than num_points=7"):
        NormalFiles(tmp_path, num_points=7)
    with pytest.raises(ValueError, match="num_points"):
        NormalFiles(tmp_path, num_points=0)
    with pytest.raises(ValueError, match="is not a folder"):
        NormalFiles(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no"):
        NormalFiles(tmp_path / "empty")


def test_splits_generated_and_from_files(tmp_path):
    splits = surface_normals_splits(root=str(tmp_path), num_train=3, num_val=1, num_test=2, num_points=16)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (3, 1, 2)
    assert splits.targets["normal"].key == NORMAL and splits.targets["normal"].level == "node"
    folder = tmp_path / "abc"
    folder.mkdir()
    for i in range(3):
        _write(folder / f"{i:03d}.xyz", [f"{j} {i} 0 0 0 1" for j in range(20)])
    splits = surface_normals_splits(num_train=1, num_val=1, num_test=1, num_points=8, files=str(folder))
    assert splits.test[0][K.POS][:, 1].eq(2).all() and splits.info["source"] == "files"
    with pytest.raises(ValueError, match="3 shapes .* fewer than"):
        surface_normals_splits(num_train=3, num_val=1, num_test=1, num_points=8, files=str(folder))
    with pytest.raises(ValueError, match="data.num_val"):
        surface_normals_splits(num_val=0)


def test_normals_transform_as_vectors():
    # rotating a cloud rotates its normals: the target of the SO(3) settings
    pos, normal = sample_surface("torus", 64, torch.Generator().manual_seed(6))
    R = random_rotations(1, torch.Generator().manual_seed(7))[0]
    assert math.isclose(float(((pos @ R.T) @ (normal @ R.T).T).trace()), float((pos @ normal.T).trace()),
                        rel_tol=1e-9)
