r"""The charged-particles N-body system of Kipf et al. (2018), as used by EGNN, SEGNN and
frame averaging to benchmark equivariant dynamics models.

Simulation (``ChargedParticlesSim`` of `ethanfetaya/NRI
<https://github.com/ethanfetaya/NRI>`_ and `vgsatorras/egnn
<https://github.com/vgsatorras/egnn>`_, ``n_body_system/dataset/synthetic_sim.py``):
five particles in 3D with charges :math:`q_i \in \{-1, +1\}` (probability 1/2 each),
pairwise Coulomb-like forces

.. math::
    \mathbf{F}_i = \sum_{j \neq i} q_i q_j \frac{\mathbf{x}_i - \mathbf{x}_j}
    {\lVert \mathbf{x}_i - \mathbf{x}_j \rVert^3},

each Cartesian component clipped to :math:`\pm 0.1 / \Delta t`, unit masses, leapfrog
integration with :math:`\Delta t = 0.001` for 5000 steps, one frame saved every 100 steps
(49 frames: step 100 is frame 0). Initial positions are :math:`\mathcal{N}(0, 1)` per
coordinate, initial velocities have norm 0.5 in uniformly random directions.

Protocol (EGNN, Satorras et al. 2021, "nbody_small"): 10,000 / 2,000 / 2,000 train / valid /
test trajectories, of which the first 3,000 train trajectories are used; the input is
positions and velocities at frame 30, the target is positions at frame 40 (1000 steps later).
The graph is fully connected, the edge attribute is :math:`q_i q_j`, the node feature is
:math:`\lVert\mathbf{v}_i\rVert`; the metric is the MSE of the predicted positions.

Units: everything is in the dimensionless units of the simulation (unit charges, masses
and interaction strength; time step 0.001), *not* Å.

================  ==========  ============================================================
key               shape       meaning (dimensionless simulation units)
================  ==========  ============================================================
``pos``           ``[5, 3]``  positions at ``frame_in``
``vel``           ``[5, 3]``  velocities at ``frame_in``
``x``             ``[5, 1]``  speed :math:`\lVert\mathbf{v}_i\rVert` at ``frame_in``
``charges``       ``[5]``     charges :math:`q_i \in \{-1, +1\}`
``edge_index``    ``[2, 20]`` fully connected graph without self loops
``edge_attr``     ``[20, 1]`` :math:`q_i q_j` for edge ``(j, i)``
``target_pos``    ``[5, 3]``  positions at ``frame_out`` (the regression target)
================  ==========  ============================================================

The random draws replay the calls of the original ``generate_dataset.py`` (legacy NumPy
``RandomState(seed)``, one stream for train, then valid, then test, including the draws of
the zero observation noise), so with seed 43 (``nbody_small``) they should reproduce the
published initial conditions; this was not checked against the published files, which are
not available offline. The integration is vectorised over all trajectories at once and
follows the original loop operation by operation, so trajectories agree up to
floating-point rounding. To run on the exact published data, pass ``files=`` to
:class:`NBody`.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch_geometric.data import Data, InMemoryDataset

from equigraph.data import keys as K

#: Trajectories per split in the published ``nbody_small`` data.
SPLIT_SIZES = {"train": 10_000, "valid": 2_000, "test": 2_000}
#: How many trajectories of each split the EGNN protocol uses (``None``: all).
PROTOCOL_MAX_SAMPLES = {"train": 3_000, "valid": None, "test": None}
#: Suffix of the published file names, ``loc_{split}_{suffix}.npy``.
PUBLISHED_SUFFIX = "charged5_initvel1small"
#: Seed of the published ``nbody_small`` generation (``generate_dataset.py --seed 43``).
PUBLISHED_SEED = 43

DT = 1e-3
#: Per-component force clip of the original simulator, ``0.1 / dt``.
MAX_FORCE = 0.1 / DT
_FILE_KINDS = ("loc", "vel", "edges", "charges")


def default_root() -> Path:
    """``$EQUIGRAPH_CACHE/nbody``, or ``~/.cache/equigraph/nbody``."""
    base = os.environ.get("EQUIGRAPH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "equigraph")
    return Path(base) / "nbody"


# --------------------------------------------------------------------------- simulation
def charged_initial_conditions(
    num_sims: int,
    *,
    seed: int = PUBLISHED_SEED,
    skip: int = 0,
    num_particles: int = 5,
    vel_norm: float = 0.5,
    box_size: float = 5.0,
    num_frames: int = 49,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Initial positions ``[S, N, 3]``, velocities ``[S, N, 3]`` and charges ``[S, N]`` of
    trajectories ``skip .. skip + num_sims - 1`` of the original generator's random stream.

    The draws are replayed one trajectory at a time (cheap) because the legacy Gaussian
    sampler carries state between calls; ``num_frames`` is needed only to consume the draws
    of the (zero) observation noise that the original makes after each trajectory.

    >>> loc, vel, q = charged_initial_conditions(2, seed=0)
    >>> loc.shape, vel.shape, q.shape
    ((2, 5, 3), (2, 5, 3), (2, 5))
    >>> bool(np.allclose(np.linalg.norm(vel, axis=-1), 0.5))
    True
    """
    if num_sims < 1:
        raise ValueError(f"num_sims must be at least 1, got {num_sims}")
    if skip < 0:
        raise ValueError(f"skip must be non-negative, got {skip}")
    rs = np.random.RandomState(seed)
    loc_std = (num_particles / 5.0) ** (1.0 / 3.0)
    locs = np.empty((num_sims, num_particles, 3))
    vels = np.empty((num_sims, num_particles, 3))
    charges = np.empty((num_sims, num_particles))
    for k in range(skip + num_sims):
        q = rs.choice(np.array([-1.0, 0.0, 1.0]), size=(num_particles, 1), p=[0.5, 0.0, 0.5])
        loc = rs.randn(3, num_particles) * loc_std
        vel = rs.randn(3, num_particles)
        vel = vel * vel_norm / np.sqrt((vel**2).sum(axis=0)).reshape(1, -1)
        rs.randn(num_frames, 3, num_particles)
        rs.randn(num_frames, 3, num_particles)
        if k < skip:
            continue
        # The original reflects the initial state off the walls of a box (never again).
        over, under = loc > box_size, loc < -box_size
        loc[over] = 2 * box_size - loc[over]
        vel[over] = -np.abs(vel[over])
        loc[under] = -2 * box_size - loc[under]
        vel[under] = np.abs(vel[under])
        locs[k - skip], vels[k - skip], charges[k - skip] = loc.T, vel.T, q[:, 0]
    return locs, vels, charges


def coulomb_forces(loc: np.ndarray, charges: np.ndarray, *, interaction_strength: float = 1.0,
                   max_force: float | None = MAX_FORCE) -> np.ndarray:
    r"""Forces ``[S, N, 3]`` :math:`\sum_j q_i q_j (x_i - x_j)/|x_i - x_j|^3` on ``loc``
    ``[S, N, 3]``, each component clipped to ``±max_force`` (``None``: no clip)."""
    diff = loc[:, :, None, :] - loc[:, None, :, :]
    # Squared distances through |a|^2 + |b|^2 - 2 a.b, as the original's ``_l2``.
    sq = (loc**2).sum(-1)
    l2 = sq[:, :, None] + sq[:, None, :] - 2.0 * np.einsum("snd,smd->snm", loc, loc)
    n = loc.shape[1]
    eye = np.eye(n, dtype=bool)
    l2[:, eye] = 1.0
    size = interaction_strength * charges[:, :, None] * charges[:, None, :] / np.power(l2, 1.5)
    size[:, eye] = 0.0
    force = (size[..., None] * diff).sum(axis=2)
    if max_force is not None:
        np.clip(force, -max_force, max_force, out=force)
    return force


def simulate_charged(
    loc: np.ndarray,
    vel: np.ndarray,
    charges: np.ndarray,
    *,
    steps: int = 5000,
    sample_every: int = 100,
    dt: float = DT,
    interaction_strength: float = 1.0,
    max_force: float | None = MAX_FORCE,
) -> tuple[np.ndarray, np.ndarray]:
    """Integrate all trajectories at once with the original's leapfrog; returns positions and
    velocities ``[S, T, N, 3]`` at steps ``sample_every, 2 * sample_every, ...`` (``T =
    steps // sample_every - 1`` frames, as the original).

    >>> loc, vel, q = charged_initial_conditions(3, seed=1)
    >>> traj_loc, traj_vel = simulate_charged(loc, vel, q, steps=500, sample_every=100)
    >>> traj_loc.shape
    (3, 4, 5, 3)
    """
    loc = np.array(loc, dtype=np.float64)
    vel = np.array(vel, dtype=np.float64)
    charges = np.asarray(charges, dtype=np.float64)
    if loc.ndim != 3 or loc.shape[-1] != 3 or vel.shape != loc.shape:
        raise ValueError(f"loc and vel must both be [S, N, 3], got {loc.shape} and {vel.shape}")
    if charges.shape != loc.shape[:2]:
        raise ValueError(f"charges must be [S, N] = {loc.shape[:2]}, got {charges.shape}")
    if not (np.isfinite(loc).all() and np.isfinite(vel).all()):
        raise ValueError("loc and vel must be finite")
    if steps % sample_every != 0 or steps // sample_every < 2:
        raise ValueError(f"steps ({steps}) must be a multiple of sample_every ({sample_every}) "
                         "with at least 2 samples")
    num_frames = steps // sample_every - 1
    out_loc = np.empty((loc.shape[0], num_frames, *loc.shape[1:]))
    out_vel = np.empty_like(out_loc)

    def force(x):
        return coulomb_forces(x, charges, interaction_strength=interaction_strength, max_force=max_force)

    with np.errstate(divide="ignore", invalid="ignore"):
        vel += dt * force(loc)
        # Steps after the last saved frame change nothing that is returned.
        for i in range(1, num_frames * sample_every + 1):
            loc += dt * vel
            if i % sample_every == 0:
                out_loc[:, i // sample_every - 1] = loc
                out_vel[:, i // sample_every - 1] = vel
            vel += dt * force(loc)
    return out_loc, out_vel


def charged_energy(loc: np.ndarray, vel: np.ndarray, charges: np.ndarray, interaction_strength: float = 1.0) -> np.ndarray:
    r"""Total energy :math:`\tfrac12\sum_i |v_i|^2 + \tfrac12 \sum_{i \ne j} q_i q_j / r_{ij}`
    of states ``loc``, ``vel`` ``[..., N, 3]`` with charges broadcastable to ``[..., N]``."""
    charges = np.broadcast_to(charges, loc.shape[:-1])
    kinetic = 0.5 * (vel**2).sum(axis=(-1, -2))
    r = np.linalg.norm(loc[..., :, None, :] - loc[..., None, :, :], axis=-1)
    n = loc.shape[-2]
    qq = charges[..., :, None] * charges[..., None, :]
    off = ~np.eye(n, dtype=bool)
    return kinetic + 0.5 * interaction_strength * (qq[..., off] / r[..., off]).sum(-1)


def generate_split_files(folder: str | os.PathLike, *, sizes: Sequence[int] = tuple(SPLIT_SIZES.values()),
                         seed: int = PUBLISHED_SEED, suffix: str = PUBLISHED_SUFFIX,
                         splits: Sequence[str] = ("train", "valid", "test"), **sim_kwargs) -> None:
    """Simulate the requested splits and write them in the community's layout,
    ``{loc,vel}_{split}_{suffix}.npy`` ``[S, 49, 3, 5]``, ``edges_...`` ``[S, 5, 5]``,
    ``charges_...`` ``[S, 5, 1]``. ``sizes`` are (train, valid, test) counts; the splits
    are consecutive pieces of one random stream, as in the original."""
    if len(sizes) != 3 or min(sizes) < 1:
        raise ValueError(f"sizes must be three positive (train, valid, test) counts, got {tuple(sizes)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    offsets = {"train": 0, "valid": sizes[0], "test": sizes[0] + sizes[1]}
    counts = dict(zip(("train", "valid", "test"), sizes))
    for split in splits:
        _check_split(split)
        loc0, vel0, q = charged_initial_conditions(counts[split], seed=seed, skip=offsets[split])
        loc, vel = simulate_charged(loc0, vel0, q, **sim_kwargs)
        arrays = {
            "loc": loc.transpose(0, 1, 3, 2),
            "vel": vel.transpose(0, 1, 3, 2),
            "edges": q[:, :, None] * q[:, None, :],
            "charges": q[:, :, None],
        }
        for kind, arr in arrays.items():
            tmp = folder / f".{kind}_{split}_{suffix}.tmp.npy"
            np.save(tmp, arr)
            os.replace(tmp, folder / f"{kind}_{split}_{suffix}.npy")


# --------------------------------------------------------------------------- files
def _check_split(split: str) -> None:
    if split not in SPLIT_SIZES:
        raise ValueError(f"split must be one of {sorted(SPLIT_SIZES)}, got {split!r}")


def load_split_files(folder: str | os.PathLike, split: str, suffix: str = PUBLISHED_SUFFIX) -> dict[str, np.ndarray]:
    """Read and validate ``{loc,vel,edges,charges}_{split}_{suffix}.npy`` from ``folder``.

    Returns ``loc``/``vel`` ``[S, T, N, 3]`` (particles before coordinates), ``charges``
    ``[S, N]`` and ``edges`` ``[S, N, N]``. A missing or malformed file raises a
    ``ValueError`` naming the file and its shape.
    """
    _check_split(split)
    folder = Path(folder)
    arrays = {}
    for kind in _FILE_KINDS:
        path = folder / f"{kind}_{split}_{suffix}.npy"
        if not path.is_file():
            raise ValueError(f"N-body file {path} does not exist")
        try:
            arrays[kind] = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise ValueError(f"N-body file {path} is not a readable .npy array: {err}") from err
    loc, vel, edges, charges = (arrays[k] for k in _FILE_KINDS)

    def bad(kind, expected):
        path = folder / f"{kind}_{split}_{suffix}.npy"
        return ValueError(f"N-body file {path} has shape {arrays[kind].shape}, expected {expected}")

    if loc.ndim != 4 or loc.shape[2] != 3 or loc.shape[0] < 1 or loc.shape[1] < 1:
        raise bad("loc", "[sims, frames, 3, particles]")
    sims, frames, _, n = loc.shape
    if vel.shape != loc.shape:
        raise bad("vel", f"{list(loc.shape)} (the shape of loc)")
    if edges.shape != (sims, n, n):
        raise bad("edges", f"[{sims}, {n}, {n}]")
    if charges.shape not in ((sims, n, 1), (sims, n)):
        raise bad("charges", f"[{sims}, {n}, 1]")
    charges = charges.reshape(sims, n).astype(np.float64)
    for kind, arr in (("loc", loc), ("vel", vel), ("charges", charges)):
        if not np.isfinite(arr).all():
            raise ValueError(f"N-body file {folder / f'{kind}_{split}_{suffix}.npy'} contains NaN or inf")
    if not np.allclose(edges, charges[:, :, None] * charges[:, None, :]):
        raise ValueError(f"N-body file {folder / f'edges_{split}_{suffix}.npy'} is not the outer "
                         f"product of the charges in charges_{split}_{suffix}.npy")
    return {"loc": loc.transpose(0, 1, 3, 2), "vel": vel.transpose(0, 1, 3, 2), "charges": charges, "edges": edges}


def full_edge_index(num_nodes: int) -> torch.Tensor:
    """``[2, N (N - 1)]`` all ordered pairs ``(j, i)``, ``j != i``, sorted by centre ``i``."""
    i, j = torch.meshgrid(torch.arange(num_nodes), torch.arange(num_nodes), indexing="ij")
    keep = i != j
    return torch.stack([j[keep], i[keep]])


def trajectories_to_data(loc: np.ndarray, vel: np.ndarray, charges: np.ndarray, *, frame_in: int = 30,
                         frame_out: int = 40, dtype: torch.dtype = torch.float32) -> list[Data]:
    """One :class:`~torch_geometric.data.Data` per trajectory from ``[S, T, N, 3]`` arrays:
    inputs at ``frame_in``, ``target_pos`` at ``frame_out`` (see the module's table)."""
    frames = loc.shape[1]
    for name, f in (("frame_in", frame_in), ("frame_out", frame_out)):
        if not 0 <= f < frames:
            raise ValueError(f"{name} must be in [0, {frames}), got {f}")
    n = loc.shape[2]
    edge_index = full_edge_index(n)
    pos = torch.as_tensor(loc[:, frame_in], dtype=dtype)
    v = torch.as_tensor(vel[:, frame_in], dtype=dtype)
    target = torch.as_tensor(loc[:, frame_out], dtype=dtype)
    q = torch.as_tensor(charges, dtype=dtype)
    qq = (q[:, edge_index[0]] * q[:, edge_index[1]]).unsqueeze(-1)
    speed = v.norm(dim=-1, keepdim=True)
    return [
        Data(**{K.POS: pos[s], K.VEL: v[s], K.X: speed[s], K.CHARGES: q[s], K.EDGE_INDEX: edge_index,
                K.EDGE_ATTR: qq[s], K.TARGET_POS: target[s]})
        for s in range(loc.shape[0])
    ]


# --------------------------------------------------------------------------- dataset
class NBody(InMemoryDataset):
    r"""The charged 5-body dataset of the EGNN paper (`"E(n) Equivariant Graph Neural
    Networks" <https://arxiv.org/abs/2102.09844>`_, ``nbody_small``), simulated on first use
    (1 to 2 minutes of one CPU core per 10,000 trajectories) and cached, or read from the
    published ``.npy`` files.

    Each graph: ``pos``, ``vel``, ``x`` (speed), ``charges``, a full ``edge_index``,
    ``edge_attr`` (:math:`q_i q_j`) and ``target_pos``, all in dimensionless simulation
    units; see :mod:`equigraph.datasets.nbody` for the system and protocol.

    Args:
        root (str, optional): cache folder (default: ``$EQUIGRAPH_CACHE/nbody`` or
            ``~/.cache/equigraph/nbody``).
        split (str, optional): ``"train"``, ``"valid"`` or ``"test"`` (default: ``"train"``).
        max_samples (int, optional): keep the first ``max_samples`` trajectories; ``None``
            takes the protocol's count, 3,000 for train and all for valid/test (capped at
            the simulated count) (default: ``None``).
        frame_in (int, optional): input frame (default: ``30``).
        frame_out (int, optional): target frame (default: ``40``).
        files (str, optional): folder with the published files
            ``{loc,vel,edges,charges}_{split}_charged5_initvel1small.npy``; when given nothing
            is simulated (default: ``None``).
        sizes (tuple, optional): simulated (train, valid, test) trajectory counts
            (default: ``(10000, 2000, 2000)``).
        seed (int, optional): seed of the simulated stream (default: ``43``, the published one).
        transform, pre_transform, pre_filter: as for any
            :class:`~torch_geometric.data.InMemoryDataset`.
        force_reload (bool, optional): rebuild the processed file (default: ``False``).

    Example (small simulated splits)::

        >>> import tempfile
        >>> ds = NBody(tempfile.mkdtemp(), "valid", sizes=(4, 3, 2), steps_per_frame=10)
        >>> len(ds), ds[0].pos.shape, ds[0].edge_attr.shape
        (3, torch.Size([5, 3]), torch.Size([20, 1]))
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        split: str = "train",
        max_samples: int | None = None,
        *,
        frame_in: int = 30,
        frame_out: int = 40,
        files: str | os.PathLike | None = None,
        sizes: Sequence[int] = tuple(SPLIT_SIZES.values()),
        seed: int = PUBLISHED_SEED,
        steps_per_frame: int = 100,
        transform: Callable | None = None,
        pre_transform: Callable | None = None,
        pre_filter: Callable | None = None,
        force_reload: bool = False,
    ):
        _check_split(split)
        if max_samples is not None and max_samples < 1:
            raise ValueError(f"max_samples must be positive or None, got {max_samples}")
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) != 3 or min(sizes) < 1:
            raise ValueError(f"sizes must be three positive (train, valid, test) counts, got {sizes}")
        if steps_per_frame < 1:
            raise ValueError(f"steps_per_frame must be positive, got {steps_per_frame}")
        for name, f in (("frame_in", frame_in), ("frame_out", frame_out)):
            if f < 0:
                raise ValueError(f"{name} must be a non-negative frame index, got {f}")
        self.split = split
        self.max_samples = None if max_samples is None else int(max_samples)
        self.frame_in, self.frame_out = frame_in, frame_out
        self.files = None if files is None else Path(files)
        if self.files is not None and not self.files.is_dir():
            raise ValueError(f"files must be an existing folder, got {self.files}")
        self.sizes, self.seed, self.steps_per_frame = sizes, seed, steps_per_frame
        root = default_root() if root is None else Path(root)
        super().__init__(str(root), transform, pre_transform, pre_filter, force_reload=force_reload)
        self.load(self.processed_paths[0])

    @property
    def raw_dir(self) -> str:
        if self.files is not None:
            return str(self.files)
        tag = f"seed{self.seed}_sizes{'-'.join(map(str, self.sizes))}"
        if self.steps_per_frame != 100:
            tag += f"_every{self.steps_per_frame}"
        return os.path.join(self.root, "raw", tag)

    @property
    def processed_dir(self) -> str:
        if self.files is None:
            return os.path.join(self.raw_dir, "processed")
        # One processed cache per published folder, named by a digest of its path.
        digest = hashlib.sha1(str(self.files.resolve()).encode()).hexdigest()[:12]
        return os.path.join(self.root, "published", digest, "processed")

    @property
    def raw_file_names(self) -> list[str]:
        return [f"{kind}_{self.split}_{PUBLISHED_SUFFIX}.npy" for kind in _FILE_KINDS]

    @property
    def processed_file_names(self) -> list[str]:
        n = "protocol" if self.max_samples is None else self.max_samples
        return [f"{self.split}_n{n}_f{self.frame_in}-{self.frame_out}.pt"]

    def download(self) -> None:
        if self.files is not None:
            missing = [f for f in self.raw_file_names if not (self.files / f).is_file()]
            raise ValueError(f"files folder {self.files} lacks {missing}")
        generate_split_files(self.raw_dir, sizes=self.sizes, seed=self.seed, splits=(self.split,),
                             steps=50 * self.steps_per_frame, sample_every=self.steps_per_frame)

    def process(self) -> None:
        arrays = load_split_files(self.raw_dir, self.split)
        available = arrays["loc"].shape[0]
        stop = self.max_samples
        if stop is None:
            # The protocol's count, or fewer when a small custom split was simulated.
            stop = min(PROTOCOL_MAX_SAMPLES[self.split] or available, available)
        if stop > available:
            raise ValueError(f"max_samples={stop} exceeds the {arrays['loc'].shape[0]} "
                             f"{self.split} trajectories in {self.raw_dir}")
        data_list = trajectories_to_data(arrays["loc"][:stop], arrays["vel"][:stop], arrays["charges"][:stop],
                                         frame_in=self.frame_in, frame_out=self.frame_out)
        if self.pre_filter is not None:
            data_list = [d for d in data_list if self.pre_filter(d)]
        if self.pre_transform is not None:
            data_list = [self.pre_transform(d) for d in data_list]
        self.save(data_list, self.processed_paths[0])

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({len(self)}, split={self.split!r}, frames={self.frame_in}->{self.frame_out})"
