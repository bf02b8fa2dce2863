import numpy as np
import pytest
import torch

from equigraph.data import keys as K
from equigraph.datasets.nbody import (
    MAX_FORCE,
    NBody,
    charged_energy,
    charged_initial_conditions,
    coulomb_forces,
    full_edge_index,
    generate_split_files,
    load_split_files,
    simulate_charged,
)

SUFFIX = "charged5_initvel1small"


def _spread_state(num_sims=3, seed=0):
    """Well-separated particles (no close encounters), so that the unclipped leapfrog
    conserves energy to O(dt^2)."""
    rng = np.random.default_rng(seed)
    loc = np.stack([np.array([[2.0, 0, 0], [-2.0, 0, 0], [0, 2.0, 0], [0, -2.0, 0], [0, 0, 2.0]])] * num_sims)
    loc += 0.1 * rng.standard_normal(loc.shape)
    vel = 0.1 * rng.standard_normal(loc.shape)
    q = rng.choice([-1.0, 1.0], size=(num_sims, 5))
    q[:, :2] = [1.0, -1.0]  # at least one attracting pair
    return loc, vel, q


def test_initial_conditions_follow_the_original_distribution():
    loc, vel, q = charged_initial_conditions(400, seed=3)
    assert set(np.unique(q)) == {-1.0, 1.0}
    assert abs((q > 0).mean() - 0.5) < 0.06
    np.testing.assert_allclose(np.linalg.norm(vel, axis=-1), 0.5)
    assert abs(loc.std() - 1.0) < 0.05
    # Skipping replays the same stream.
    loc2, vel2, q2 = charged_initial_conditions(10, seed=3, skip=390)
    np.testing.assert_array_equal(loc2, loc[390:])
    np.testing.assert_array_equal(q2, q[390:])


def test_forces_match_a_pairwise_loop_and_clip():
    loc, _, q = charged_initial_conditions(2, seed=5)
    f = coulomb_forces(loc, q, max_force=None)
    for s in range(2):
        for i in range(5):
            expected = sum(q[s, i] * q[s, j] * (loc[s, i] - loc[s, j]) / np.linalg.norm(loc[s, i] - loc[s, j]) ** 3
                           for j in range(5) if j != i)
            np.testing.assert_allclose(f[s, i], expected, rtol=1e-9)
    close = loc.copy()
    close[:, 1] = close[:, 0] + 1e-3
    assert np.abs(coulomb_forces(close, q)).max() == pytest.approx(MAX_FORCE)


def test_forces_are_minus_the_energy_gradient():
    loc, vel, q = _spread_state(1)
    f = coulomb_forces(loc, q, max_force=None)
    eps = 1e-6
    grad = np.zeros_like(loc)
    for i in range(5):
        for d in range(3):
            p, m = loc.copy(), loc.copy()
            p[0, i, d] += eps
            m[0, i, d] -= eps
            grad[0, i, d] = (charged_energy(p, vel, q) - charged_energy(m, vel, q))[0] / (2 * eps)
    np.testing.assert_allclose(f, -grad, rtol=1e-5, atol=1e-7)


def test_energy_conserved_over_short_unclipped_run():
    loc, vel, q = _spread_state()
    traj_loc, traj_vel = simulate_charged(loc, vel, q, steps=1000, sample_every=100, max_force=None)
    e = charged_energy(traj_loc, traj_vel, q[:, None])
    assert e.shape == (3, 9)
    assert np.abs(e - e[:, :1]).max() < 1e-3 * np.abs(e).max()
    # The particles did move: the check is not trivially satisfied.
    assert np.abs(traj_loc[:, -1] - traj_loc[:, 0]).max() > 0.05


def test_momentum_conserved_with_equal_masses():
    loc, vel, q = charged_initial_conditions(4, seed=11)
    _, traj_vel = simulate_charged(loc, vel, q, steps=2000, sample_every=100, max_force=None)
    momentum = traj_vel.sum(axis=2)
    np.testing.assert_allclose(momentum, np.broadcast_to(momentum[:, :1], momentum.shape), atol=1e-10)


def test_simulation_is_deterministic_and_samples_every_k_steps():
    loc, vel, q = charged_initial_conditions(2, seed=2)
    a = simulate_charged(loc, vel, q, steps=400, sample_every=100)
    b = simulate_charged(loc, vel, q, steps=400, sample_every=100)
    np.testing.assert_array_equal(a[0], b[0])
    # 3 frames at steps 100, 200, 300; frame 1 is 100 steps after frame 0.
    assert a[0].shape == (2, 3, 5, 3)
    c = simulate_charged(loc, vel, q, steps=200, sample_every=100)
    np.testing.assert_array_equal(c[0][:, 0], a[0][:, 0])


@pytest.mark.parametrize("bad, match", [
    (dict(steps=450), "multiple"),
    (dict(loc=np.full((1, 5, 3), np.nan)), "finite"),
    (dict(charges=np.ones((1, 4))), "charges"),
])
def test_simulation_rejects_bad_input(bad, match):
    args = dict(loc=np.zeros((1, 5, 3)) + np.arange(5)[:, None], vel=np.zeros((1, 5, 3)), charges=np.ones((1, 5)))
    kw = dict(steps=500, sample_every=100)
    for key in ("loc", "charges"):
        args[key] = bad.pop(key, args[key])
    kw.update(bad)
    with pytest.raises(ValueError, match=match):
        simulate_charged(args["loc"], args["vel"], args["charges"], **kw)


def test_full_edge_index_has_no_self_loops_and_all_pairs():
    ei = full_edge_index(5)
    assert ei.shape == (2, 20)
    assert (ei[0] != ei[1]).all()
    assert len({tuple(e) for e in ei.t().tolist()}) == 20


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    return tmp_path_factory.mktemp("nbody")


def _small(root, split, **kw):
    return NBody(root, split, sizes=(6, 3, 2), steps_per_frame=5, **kw)


def test_dataset_splits_shapes_and_keys(small_root):
    train = _small(small_root, "train")
    valid = _small(small_root, "valid")
    test = _small(small_root, "test")
    assert (len(train), len(valid), len(test)) == (6, 3, 2)
    d = train[0]
    assert d[K.POS].shape == d[K.VEL].shape == d[K.TARGET_POS].shape == (5, 3)
    assert d[K.X].shape == (5, 1) and d[K.CHARGES].shape == (5,)
    assert d[K.EDGE_INDEX].shape == (2, 20) and d[K.EDGE_ATTR].shape == (20, 1)
    torch.testing.assert_close(d[K.X][:, 0], d[K.VEL].norm(dim=-1))
    q = d[K.CHARGES]
    torch.testing.assert_close(d[K.EDGE_ATTR][:, 0], q[d[K.EDGE_INDEX][0]] * q[d[K.EDGE_INDEX][1]])
    # Splits are different trajectories.
    assert not torch.allclose(train[0].pos, valid[0].pos) and not torch.allclose(valid[0].pos, test[0].pos)
    assert "NBody(6" in repr(train)


def test_dataset_frames_30_to_40_and_determinism(small_root, tmp_path):
    ds = _small(small_root, "valid")
    raw = load_split_files(ds.raw_dir, "valid")
    torch.testing.assert_close(ds[1].pos, torch.as_tensor(raw["loc"][1, 30], dtype=torch.float32))
    torch.testing.assert_close(ds[1].target_pos, torch.as_tensor(raw["loc"][1, 40], dtype=torch.float32))
    torch.testing.assert_close(ds[1].vel, torch.as_tensor(raw["vel"][1, 30], dtype=torch.float32))
    again = _small(tmp_path, "valid")
    torch.testing.assert_close(again[2].target_pos, ds[2].target_pos, rtol=0, atol=0)
    other_seed = NBody(tmp_path, "valid", sizes=(6, 3, 2), steps_per_frame=5, seed=7)
    assert not torch.allclose(other_seed[0].pos, ds[0].pos)
    shifted = _small(small_root, "valid", frame_in=20, frame_out=30)
    torch.testing.assert_close(shifted[1].target_pos, ds[1].pos)


def test_dataset_max_samples(small_root):
    assert len(_small(small_root, "train", max_samples=4)) == 4
    torch.testing.assert_close(_small(small_root, "train", max_samples=4)[3].pos, _small(small_root, "train")[3].pos)
    with pytest.raises(ValueError, match="max_samples"):
        _small(small_root, "train", max_samples=7)
    with pytest.raises(ValueError, match="max_samples"):
        _small(small_root, "train", max_samples=0)


def _write_published(folder, split, sims=3, frames=49, n=5, seed=0, **override):
    rng = np.random.default_rng(seed)
    q = rng.choice([-1.0, 1.0], size=(sims, n, 1))
    arrays = {
        "loc": rng.standard_normal((sims, frames, 3, n)),
        "vel": rng.standard_normal((sims, frames, 3, n)),
        "edges": q @ q.transpose(0, 2, 1),
        "charges": q,
    }
    arrays.update(override)
    for kind, arr in arrays.items():
        np.save(folder / f"{kind}_{split}_{SUFFIX}.npy", arr)
    return arrays


def test_reader_uses_the_published_layout(tmp_path):
    files = tmp_path / "published"
    files.mkdir()
    arrays = _write_published(files, "test")
    ds = NBody(tmp_path / "cache", "test", files=files)
    assert len(ds) == 3
    # Published layout is [sims, frames, 3, particles].
    torch.testing.assert_close(ds[2].pos, torch.as_tensor(arrays["loc"][2, 30].T, dtype=torch.float32))
    torch.testing.assert_close(ds[2].target_pos, torch.as_tensor(arrays["loc"][2, 40].T, dtype=torch.float32))
    torch.testing.assert_close(ds[2].charges, torch.as_tensor(arrays["charges"][2, :, 0], dtype=torch.float32))


def test_generated_files_round_trip_through_the_reader(tmp_path):
    generate_split_files(tmp_path, sizes=(2, 1, 1), splits=("valid",), steps=50, sample_every=5)
    assert np.load(tmp_path / f"loc_valid_{SUFFIX}.npy").shape == (1, 9, 3, 5)
    assert np.load(tmp_path / f"charges_valid_{SUFFIX}.npy").shape == (1, 5, 1)
    out = load_split_files(tmp_path, "valid")
    assert out["loc"].shape == (1, 9, 5, 3)


@pytest.mark.parametrize("kind, shape", [("loc", (3, 49, 5, 3)), ("vel", (3, 48, 3, 5)), ("edges", (3, 5)),
                                         ("charges", (2, 5, 1))])
def test_reader_names_malformed_file_and_shape(tmp_path, kind, shape):
    override = {kind: np.zeros(shape)}
    if kind == "charges":
        override["charges"] = np.ones(shape)
    _write_published(tmp_path, "train", **override)
    with pytest.raises(ValueError, match=rf"{kind}_train_{SUFFIX}\.npy has shape \({shape[0]}, "):
        load_split_files(tmp_path, "train")


def test_reader_rejects_missing_files_nan_and_inconsistent_edges(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_split_files(tmp_path, "valid")
    with pytest.raises(ValueError, match="lacks"):
        NBody(tmp_path / "cache", "valid", files=tmp_path)
    loc = np.zeros((3, 49, 3, 5))
    loc[0, 0, 0, 0] = np.nan
    _write_published(tmp_path, "valid", loc=loc)
    with pytest.raises(ValueError, match="NaN"):
        load_split_files(tmp_path, "valid")
    _write_published(tmp_path, "valid", edges=np.ones((3, 5, 5)) * 2)
    with pytest.raises(ValueError, match="outer product"):
        load_split_files(tmp_path, "valid")


def test_dataset_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="split"):
        NBody(tmp_path, "val")
    with pytest.raises(ValueError, match="sizes"):
        NBody(tmp_path, "train", sizes=(1, 2))
    with pytest.raises(ValueError, match="files"):
        NBody(tmp_path, "train", files=tmp_path / "nope")
    with pytest.raises(ValueError, match="frame_out"):
        NBody(tmp_path, "train", sizes=(1, 1, 1), steps_per_frame=2, frame_out=49)
