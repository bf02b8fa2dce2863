r"""Point clouds with exact unit normals, for normal estimation (the point-cloud experiment
of Puny et al., `"Frame Averaging for Invariant and Equivariant Network Design"
<https://arxiv.org/abs/2110.03336>`_, ICLR 2022, Sec. 5.2).

Two sources, both giving ``Data(pos=[P, 3], normal=[P, 3])`` (positions in the units of
the shape, normals of unit length, oriented as given but compared unoriented):

* :class:`SurfaceNormals`: clouds generated from analytic surfaces with random parameters
  (:data:`SURFACE_KINDS`: spheres, ellipsoids, tori, capped cylinders, superquadrics,
  smooth random height fields and star-shaped blobs), each bent by a random smooth map
  (anisotropic scale, taper, twist, a sinusoidal bump). Points and normals are exact: a
  patch :math:`\mathbf{r}(u, v)` has the normal :math:`\mathbf{r}_u \times \mathbf{r}_v`,
  a deformation :math:`\phi` with Jacobian :math:`J` carries it to
  :math:`\operatorname{cof}(J)\,\mathbf{n} = \det J\, J^{-\top}\mathbf{n}`, both from
  forward-mode autodiff in float64. Points are drawn by area (a pool of candidates weighted
  by their area element, sampled without replacement), centred and scaled into the unit
  ball. Shape ``i`` depends only on ``(seed, i)``; a generated set is cached on disk.
* :func:`read_normals_file` / :class:`NormalFiles`: the text format of the ABC
  normal-estimation sets (Koch et al. 2019) and of PCPNet: one shape per file, one point
  per line, whitespace-separated ``x y z nx ny nz`` (``.xyz``, ``.txt`` or ``.pts``;
  ``#`` starts a comment), or PCPNet's pair ``NAME.xyz`` (``x y z``) + ``NAME.normals``
  (``nx ny nz``). Normals are normalised on reading; a zero or non-finite value is an error
  that names the file and line.

The cloud is axis-aligned as generated (or as stored): the "I" setting of the paper; a
benchmark rotates it for the "SO(3)" settings.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data

from equigraph.data import keys as K

__all__ = [
    "NORMAL",
    "SURFACE_KINDS",
    "sample_surface",
    "SurfaceNormals",
    "read_normals_file",
    "NormalFiles",
    "random_rotations",
    "surface_normals_splits",
]

#: ``[N, 3]`` float: unit surface normals (``equigraph.data.keys.NORMAL`` once registered).
NORMAL = getattr(K, "NORMAL", "normal")

#: The generated surface families; shape ``i`` of a set is of kind ``kinds[i % len(kinds)]``.
SURFACE_KINDS = ("sphere", "ellipsoid", "torus", "cylinder", "superquadric", "height_field", "blob")

#: Candidates drawn per output point before the area-weighted subsample.
POOL_FACTOR = 12

#: Bumped when the generator changes, so that stale caches are not reused.
GENERATOR_VERSION = 1

_TWO_PI = 2 * math.pi


def default_root() -> Path:
    """``$EQUIGRAPH_CACHE/point_clouds``, or ``~/.cache/equigraph/point_clouds``."""
    base = os.environ.get("EQUIGRAPH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "equigraph")
    return Path(base) / "point_clouds"


# --------------------------------------------------------------------------- surfaces
def _uniform(g: torch.Generator, lo: float, hi: float, *shape) -> Tensor:
    return lo + (hi - lo) * torch.rand(*(shape or (1,)), generator=g, dtype=torch.float64)


def _spow(x: Tensor, e: float) -> Tensor:
    """Signed power ``sign(x) |x|^e`` (superquadrics)."""
    return torch.sign(x) * x.abs().pow(e)


def _patches(kind: str, g: torch.Generator):
    """``[(r(uv) -> xyz, (u0, u1, v0, v1), orientation)]`` of a surface of ``kind`` with
    random parameters; ``r`` maps one ``[2]`` parameter to ``[3]`` (vmapped later), and
    ``orientation * r_u x r_v`` points out of closed surfaces."""
    def sphere(uv):
        u, v = uv[0], uv[1]
        return torch.stack([torch.cos(u) * torch.sin(v), torch.sin(u) * torch.sin(v), torch.cos(v)])

    if kind in ("sphere", "ellipsoid"):
        return [(sphere, (0.0, _TWO_PI, 0.0, math.pi), -1.0)]
    if kind == "torus":
        a = float(_uniform(g, 0.2, 0.5))

        def torus(uv):
            u, v = uv[0], uv[1]
            ring = 1.0 + a * torch.cos(v)
            return torch.stack([ring * torch.cos(u), ring * torch.sin(u), a * torch.sin(v)])

        return [(torus, (0.0, _TWO_PI, 0.0, _TWO_PI), 1.0)]
    if kind == "cylinder":
        h = float(_uniform(g, 0.5, 1.5))

        def side(uv):
            return torch.stack([torch.cos(uv[0]), torch.sin(uv[0]), uv[1]])

        def cap(z):
            def disk(uv):  # (angle, radius): r_u x r_v = -radius e_z
                return torch.stack([uv[1] * torch.cos(uv[0]), uv[1] * torch.sin(uv[0]), torch.full_like(uv[1], z)])
            return disk

        return [(side, (0.0, _TWO_PI, -h, h), 1.0), (cap(h), (0.0, _TWO_PI, 0.0, 1.0), -1.0),
                (cap(-h), (0.0, _TWO_PI, 0.0, 1.0), 1.0)]
    if kind == "superquadric":
        e1, e2 = (float(x) for x in _uniform(g, 0.45, 1.4, 2))

        def superquadric(uv):
            u, v = uv[0], uv[1] - math.pi / 2  # v: latitude in (-pi/2, pi/2)
            cv = _spow(torch.cos(v), e1)
            return torch.stack([cv * _spow(torch.cos(u), e2), cv * _spow(torch.sin(u), e2), _spow(torch.sin(v), e1)])

        return [(superquadric, (0.0, _TWO_PI, 0.0, math.pi), 1.0)]
    if kind == "height_field":
        freq = torch.randn(4, 2, generator=g, dtype=torch.float64) * 2.5
        amp = _uniform(g, 0.03, 0.12, 4)
        phase = _uniform(g, 0.0, _TWO_PI, 4)

        def field(uv):
            return torch.stack([uv[0], uv[1], (amp * torch.sin(freq @ uv + phase)).sum()])

        return [(field, (-1.0, 1.0, -1.0, 1.0), 1.0)]
    if kind == "blob":
        freq = torch.randn(5, 3, generator=g, dtype=torch.float64) * 2.0
        amp = _uniform(g, 0.02, 0.07, 5)
        phase = _uniform(g, 0.0, _TWO_PI, 5)

        def blob(uv):
            d = sphere(uv)
            return d * (1.0 + (amp * torch.sin(freq @ d + phase)).sum())

        return [(blob, (0.0, _TWO_PI, 0.0, math.pi), -1.0)]
    raise ValueError(f"kind: unknown surface {kind!r}; known: {', '.join(SURFACE_KINDS)}")


def _deformation(kind: str, g: torch.Generator) -> Callable[[Tensor], Tensor]:
    """A random smooth, orientation-preserving map of ``[3]`` points: anisotropic scale,
    taper along z, twist about z, a sinusoidal bump (spheres are only scaled)."""
    if kind == "sphere":
        s = float(_uniform(g, 0.5, 1.5))
        return lambda x: s * x
    scale = _uniform(g, 0.6, 1.4, 3)
    taper = float(_uniform(g, -0.2, 0.2))
    twist = float(_uniform(g, -0.6, 0.6))
    direction = torch.randn(3, generator=g, dtype=torch.float64)
    direction = direction / direction.norm()
    freq = torch.randn(3, generator=g, dtype=torch.float64) * 2.0
    # |bump'| <= amp |freq| <= 0.3 keeps the map invertible
    amp = min(float(_uniform(g, 0.0, 0.06)), 0.3 / max(float(freq.norm()), 1e-12))
    phase = float(_uniform(g, 0.0, _TWO_PI))

    def phi(x):
        x = x * scale
        z = x[2]
        t = 1.0 + taper * z
        c, s = torch.cos(twist * z), torch.sin(twist * z)
        x = torch.stack([t * (c * x[0] - s * x[1]), t * (s * x[0] + c * x[1]), z])
        return x + amp * torch.sin(freq @ x + phase) * direction

    return phi


def sample_surface(kind: str, num_points: int = 512, generator: Optional[torch.Generator] = None,
                   deform: bool = True) -> tuple[Tensor, Tensor]:
    r"""Points and exact unit normals of one random surface of ``kind``.

    Args:
        kind (str): one of :data:`SURFACE_KINDS`.
        num_points (int, optional): points drawn. (default: :obj:`512`)
        generator (torch.Generator, optional): the random stream (parameters and points).
            (default: :obj:`None`, the global one)
        deform (bool, optional): apply the random smooth deformation. (default: :obj:`True`)

    Returns:
        ``(pos [P, 3], normal [P, 3])`` in float64, centred at the centroid and scaled to
        radius 1; closed surfaces have outward normals.

    >>> pos, normal = sample_surface("sphere", 64, torch.Generator().manual_seed(0))
    >>> pos.shape, bool(torch.allclose(normal.norm(dim=1), torch.ones(64, dtype=torch.float64)))
    (torch.Size([64, 3]), True)
    >>> bool(((normal * pos).sum(1) > 0.5).all())  # outward (the centroid of a sample is near the centre)
    True
    """
    if kind not in SURFACE_KINDS:
        raise ValueError(f"kind: unknown surface {kind!r}; known: {', '.join(SURFACE_KINDS)}")
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 3:
        raise ValueError(f"num_points: must be an integer >= 3, got {num_points!r}")
    g = generator if generator is not None else torch.default_generator
    patches = _patches(kind, g)
    phi = _deformation(kind, g) if deform else (lambda x: x)
    jac_r = [torch.func.vmap(torch.func.jacfwd(r)) for r, _, _ in patches]
    jac_phi = torch.func.vmap(torch.func.jacfwd(phi))
    pool = POOL_FACTOR * num_points
    areas = [(u1 - u0) * (v1 - v0) for _, (u0, u1, v0, v1), _ in patches]
    per_patch = [max(num_points, int(pool * a / sum(areas))) for a in areas]
    points, normals, weights = [], [], []
    for (r, (u0, u1, v0, v1), orientation), jac, m, area in zip(patches, jac_r, per_patch, areas):
        uv = torch.rand(m, 2, generator=g, dtype=torch.float64)
        uv = torch.stack([u0 + (u1 - u0) * uv[:, 0], v0 + (v1 - v0) * uv[:, 1]], dim=1)
        x = torch.func.vmap(r)(uv)
        d = jac(uv)  # [m, 3, 2]
        n = orientation * torch.linalg.cross(d[..., 0], d[..., 1])
        dA = n.norm(dim=1) * area / m
        n = n / n.norm(dim=1, keepdim=True)
        J = jac_phi(x)  # [m, 3, 3]
        # cof(J) n = det(J) J^{-T} n: the deformed normal, scaled by the area change
        cn = torch.linalg.det(J).unsqueeze(1) * torch.linalg.solve(J.transpose(1, 2), n.unsqueeze(-1)).squeeze(-1)
        stretch = cn.norm(dim=1)
        points.append(torch.func.vmap(phi)(x))
        normals.append(cn / stretch.unsqueeze(1))
        weights.append(dA * stretch)
    pos, normal, w = torch.cat(points), torch.cat(normals), torch.cat(weights)
    # poles and seams of a parametrisation (r_u x r_v = 0, infinite slopes) carry no area
    ok = torch.isfinite(pos).all(1) & torch.isfinite(normal).all(1) & torch.isfinite(w) & (w > 0)
    pos, normal, w = pos[ok], normal[ok], w[ok]
    pick = torch.multinomial(w, num_points, replacement=False, generator=g)
    pos, normal = pos[pick], normal[pick]
    pos = pos - pos.mean(dim=0)
    pos = pos / pos.norm(dim=1).max()
    return pos, normal


def random_rotations(num: int, generator: Optional[torch.Generator] = None,
                     dtype: torch.dtype = torch.float64) -> Tensor:
    """``[num, 3, 3]`` rotations drawn uniformly from SO(3) (normalised Gaussian
    quaternions).

    >>> R = random_rotations(4, torch.Generator().manual_seed(0))
    >>> bool(torch.allclose(R @ R.transpose(1, 2), torch.eye(3, dtype=R.dtype).expand(4, 3, 3)))
    True
    """
    q = torch.randn(num, 4, generator=generator, dtype=torch.float64)
    q = q / q.norm(dim=1, keepdim=True)
    w, x, y, z = q.unbind(1)
    R = torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=1).view(num, 3, 3)
    return R.to(dtype)


class SurfaceNormals(torch.utils.data.Dataset):
    r"""Generated clouds with exact normals (see the module docstring): shape ``i`` is a
    surface of kind ``kinds[i % len(kinds)]`` drawn from the stream seeded by
    ``(seed, i)``, so a smaller set is a prefix of a larger one.

    Generated once and cached in ``root`` as ``surfaces_<digest>.pt`` (the digest of the
    options and :data:`GENERATOR_VERSION`); nothing is downloaded.

    Args:
        root (str, optional): cache folder; :obj:`None` uses
            ``$EQUIGRAPH_CACHE/point_clouds``; ``False`` keeps the set in memory only.
            (default: :obj:`None`)
        num_shapes (int, optional): number of clouds. (default: :obj:`1000`)
        num_points (int, optional): points per cloud. (default: :obj:`512`)
        seed (int, optional): seed of the set. (default: :obj:`0`)
        kinds (sequence of str, optional): surface families. (default: :data:`SURFACE_KINDS`)
        deform (bool, optional): random smooth deformations. (default: :obj:`True`)
        transform (callable, optional): applied to every ``Data`` on access.
        dtype (torch.dtype, optional): dtype of ``pos`` and ``normal``. (default: float32)

    Every item is ``Data(pos=[P, 3], normal=[P, 3], kind=[1])`` (``kind``: index into
    ``kinds``).

    >>> ds = SurfaceNormals(root=False, num_shapes=3, num_points=32)
    >>> len(ds), ds[1].pos.shape, ds.kinds[int(ds[1].kind)]
    (3, torch.Size([32, 3]), 'ellipsoid')
    """

    def __init__(self, root: Union[str, os.PathLike, None, bool] = None, num_shapes: int = 1000,
                 num_points: int = 512, seed: int = 0, kinds: Sequence[str] = SURFACE_KINDS, deform: bool = True,
                 transform: Optional[Callable] = None, dtype: torch.dtype = torch.float32):
        for name, value, low in (("num_shapes", num_shapes, 1), ("num_points", num_points, 3)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}: must be an integer >= {low}, got {value!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed: must be a non-negative integer, got {seed!r}")
        kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
        unknown = [k for k in kinds if k not in SURFACE_KINDS]
        if not kinds or unknown:
            raise ValueError(f"kinds: unknown or empty {unknown or list(kinds)}; known: {', '.join(SURFACE_KINDS)}")
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ValueError(f"dtype: must be a floating-point torch.dtype, got {dtype!r}")
        self.num_shapes, self.num_points, self.seed = num_shapes, num_points, seed
        self.kinds, self.deform, self.transform, self.dtype = kinds, bool(deform), transform, dtype
        self.path = None if root is False else Path(default_root() if root is None else root) / \
            f"surfaces_{self.digest()}.pt"
        if self.path is not None and self.path.is_file():
            saved = torch.load(self.path, weights_only=True)
            self.pos, self.normal = saved["pos"], saved["normal"]
        else:
            self.pos, self.normal = self._generate()
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_suffix(".tmp")
                torch.save({"pos": self.pos, "normal": self.normal}, tmp)
                tmp.replace(self.path)

    def digest(self) -> str:
        options = {"n": self.num_shapes, "p": self.num_points, "seed": self.seed, "kinds": list(self.kinds),
                   "deform": self.deform, "version": GENERATOR_VERSION}
        return hashlib.sha1(json.dumps(options, sort_keys=True).encode()).hexdigest()[:12]

    def _generate(self) -> tuple[Tensor, Tensor]:
        pos = torch.empty(self.num_shapes, self.num_points, 3, dtype=torch.float64)
        normal = torch.empty_like(pos)
        for i in range(self.num_shapes):
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
            pos[i], normal[i] = sample_surface(self.kinds[i % len(self.kinds)], self.num_points, g, self.deform)
        return pos, normal

    def __len__(self) -> int:
        return self.num_shapes

    def __getitem__(self, i: int) -> Data:
        if not -self.num_shapes <= i < self.num_shapes:
            raise IndexError(f"index {i} out of range for {self.num_shapes} shapes")
        i = i % self.num_shapes
        data = Data(**{K.POS: self.pos[i].to(self.dtype), NORMAL: self.normal[i].to(self.dtype)},
                    kind=torch.tensor([i % len(self.kinds)]))
        return self.transform(data) if self.transform is not None else data

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.num_shapes} shapes x {self.num_points} points, kinds={list(self.kinds)})"


# --------------------------------------------------------------------------- files
#: Suffixes of one-file shapes (``x y z nx ny nz`` per line).
SHAPE_SUFFIXES = (".xyz", ".txt", ".pts")


def _read_table(path: Path, columns: int) -> np.ndarray:
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            parts = text.replace(",", " ").split()
            if len(parts) != columns:
                raise ValueError(f"{path}: line {number} has {len(parts)} values, expected {columns}")
            try:
                values = [float(p) for p in parts]
            except ValueError:
                raise ValueError(f"{path}: line {number} is not numeric: {text[:60]!r}") from None
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"{path}: line {number} has a NaN or inf value")
            rows.append(values)
    if not rows:
        raise ValueError(f"{path}: no points")
    return np.asarray(rows, dtype=np.float64)


def read_normals_file(path: Union[str, os.PathLike], dtype: torch.dtype = torch.float32) -> Data:
    r"""One shape of the ABC / PCPNet normal-estimation text format.

    ``path`` is either a file of ``x y z nx ny nz`` lines, or a ``NAME.xyz`` of ``x y z``
    lines with a ``NAME.normals`` of ``nx ny nz`` lines beside it (PCPNet). Values are
    separated by whitespace (or commas); blank lines and ``#`` comments are skipped.

    Returns:
        ``Data(pos=[P, 3], normal=[P, 3])`` with unit normals.

    Raises:
        ValueError: naming the file (and line) for a missing file, a line with the wrong
            number of values, non-numeric, NaN or inf values, a zero normal, or
            ``.xyz``/``.normals`` files of different lengths.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    with open(path, encoding="utf-8") as f:
        first = next((line for line in f if line.split("#", 1)[0].strip()), "")
    width = len(first.split("#", 1)[0].replace(",", " ").split())
    if width == 3:
        side = path.with_suffix(".normals")
        if not side.is_file():
            raise ValueError(f"{path}: 3 values per line (positions only) and no {side.name} beside it")
        pos, normal = _read_table(path, 3), _read_table(side, 3)
        if len(pos) != len(normal):
            raise ValueError(f"{side}: {len(normal)} normals for {len(pos)} points in {path.name}")
    else:
        table = _read_table(path, 6)
        pos, normal = table[:, :3], table[:, 3:]
    length = np.linalg.norm(normal, axis=1)
    bad = np.nonzero(length < 1e-12)[0]
    if bad.size:
        raise ValueError(f"{path}: point {int(bad[0])} has a zero normal")
    normal = normal / length[:, None]
    return Data(**{K.POS: torch.from_numpy(pos).to(dtype), NORMAL: torch.from_numpy(normal).to(dtype)})


class NormalFiles(torch.utils.data.Dataset):
    r"""A folder of shapes in the text format of :func:`read_normals_file` (e.g. the ABC
    512-point normal-estimation set, one file per shape), sorted by file name.

    Args:
        root (str): the folder.
        files (sequence of str, optional): file names (relative to ``root``) to read, in
            this order, e.g. a split list; :obj:`None` takes every ``.xyz``, ``.txt`` and
            ``.pts`` file. (default: :obj:`None`)
        num_points (int, optional): keep this many points of each shape (a random subset,
            seeded by ``seed`` and the file's index); a shape with fewer points is an error;
            :obj:`None` keeps all. (default: :obj:`None`)
        seed (int, optional): seed of the subsets. (default: :obj:`0`)
        transform (callable, optional): applied to every ``Data`` on access.

    The files are read when the dataset is built (a bad file fails at once).
    """

    def __init__(self, root: Union[str, os.PathLike], files: Optional[Sequence[str]] = None,
                 num_points: Optional[int] = None, seed: int = 0, transform: Optional[Callable] = None):
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"root: {str(root)!r} is not a folder")
        if files is None:
            paths = sorted(p for p in root.iterdir() if p.suffix.lower() in SHAPE_SUFFIXES and p.is_file())
        else:
            paths = [root / f for f in files]
        if not paths:
            raise ValueError(f"root: {str(root)!r} holds no {'/'.join(SHAPE_SUFFIXES)} files")
        if num_points is not None and (isinstance(num_points, bool) or not isinstance(num_points, int)
                                       or num_points < 1):
            raise ValueError(f"num_points: must be a positive integer or None, got {num_points!r}")
        self.paths, self.transform = paths, transform
        self.items = []
        for i, path in enumerate(paths):
            data = read_normals_file(path)
            if num_points is not None:
                n = data[K.POS].size(0)
                if n < num_points:
                    raise ValueError(f"{path}: {n} points, fewer than num_points={num_points}")
                keep = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + i))[:num_points]
                data = Data(**{K.POS: data[K.POS][keep], NORMAL: data[NORMAL][keep]})
            self.items.append(data)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Data:
        data = self.items[i]
        return self.transform(data) if self.transform is not None else data


# --------------------------------------------------------------------------- registry
def surface_normals_splits(root: Optional[str] = None, num_train: int = 800, num_val: int = 100,
                           num_test: int = 100, num_points: int = 512, seed: int = 0,
                           kinds: Union[str, Sequence[str]] = SURFACE_KINDS, files: Optional[str] = None):
    """:class:`~equigraph.datasets.registry.DataSplits` for normal estimation: the target
    ``normal`` (node level, unitless), compared with the model's ``y``.

    Generated shapes (:class:`SurfaceNormals`: the first ``num_train`` shapes train, the
    next ``num_val`` validate, the next ``num_test`` test), or, with ``files``, a folder of
    :class:`NormalFiles` split in that order (sorted by name).
    """
    from equigraph.datasets.registry import DataSplits, TargetInfo

    for name, value in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"data.{name}: must be a positive integer, got {value!r}")
    total = num_train + num_val + num_test
    if files is not None:
        ds = NormalFiles(files, num_points=num_points, seed=seed)
        if len(ds) < total:
            raise ValueError(f"data.files: {len(ds)} shapes in {files!r}, fewer than num_train + num_val + "
                             f"num_test = {total}")
        items = [ds[i] for i in range(total)]
    else:
        ds = SurfaceNormals(root, num_shapes=total, num_points=num_points, seed=seed, kinds=kinds)
        items = [ds[i] for i in range(total)]
    return DataSplits(train=items[:num_train], val=items[num_train:num_train + num_val],
                      test=items[num_train + num_val:],
                      targets={"normal": TargetInfo(NORMAL, "node", "", output=K.Y)},
                      info={"source": "files" if files else "generated", "num_points": num_points})
