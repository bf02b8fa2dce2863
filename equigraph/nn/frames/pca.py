r"""PCA frames of Puny et al., `"Frame Averaging for Invariant and Equivariant Network
Design" <https://arxiv.org/abs/2110.03336>`_ (ICLR 2022), Sec. 3.1, computed for every graph
of a PyG batch at once.

For the points :math:`X \in \mathbb{R}^{n \times 3}` of one graph,

.. math::
    \mathbf{t} = \tfrac{1}{n} X^\top \mathbf{1}, \qquad
    C = (X - \mathbf{1}\mathbf{t}^\top)^\top (X - \mathbf{1}\mathbf{t}^\top)
    = V \operatorname{diag}(\lambda_1, \lambda_2, \lambda_3) V^\top,
    \quad \lambda_1 \ge \lambda_2 \ge \lambda_3,

and the frame is the set of group elements :math:`g = (R, \mathbf{t})` with
:math:`R = [\pm\mathbf{v}_1, \pm\mathbf{v}_2, \pm\mathbf{v}_3]`: all 8 sign choices for
:math:`O(3)` / :math:`E(3)`, the 4 with :math:`\det R = +1` for :math:`SO(3)` / :math:`SE(3)`.
For the groups without translations (``"O3"``, ``"SO3"``) :math:`\mathbf{t} = 0` and
:math:`C = X^\top X`. An element acts on a point as :math:`\mathbf{x} \mapsto R\mathbf{x} +
\mathbf{t}` (rows: ``x @ R.T + t``), and the canonical coordinates of the frame element are
:math:`g^{-1} X`, rows ``(x - t) @ R``.

When :math:`X \mapsto X Q^\top + \mathbf{1}\mathbf{s}^\top` (:math:`Q \in O(3)`), every
eigenvector :math:`\mathbf{v}_k` maps to :math:`\pm Q\mathbf{v}_k`, so the *set* of frame
elements maps to :math:`\{(QR, Q\mathbf{t} + \mathbf{s})\}` and the canonical coordinates are
the same set of copies: that is what makes frame averaging exactly equivariant.

Degenerate spectra
------------------
If a *non-zero* eigenvalue is repeated (a regular polygon or polyhedron, a symmetric-top
molecule such as NH3 or CH4, a sphere-like cloud), the eigenvectors of that eigenvalue are
any orthonormal basis of their eigenspace: :func:`torch.linalg.eigh` returns *some* basis,
which does not rotate with the input. The frame is then still a set of valid orthogonal
matrices and the averaged output is a finite, well-defined function of the input (the
average over that basis's sign flips), but it is **not equivariant** to rotations that mix
the degenerate axes. Such rows are flagged in :attr:`Frames.degenerate`: a relative gap
:math:`(\lambda_1 - \lambda_2) / \lambda_1` or :math:`(\lambda_2 - \lambda_3) / \lambda_1`
below ``tol`` with the repeated eigenvalue above ``tol`` :math:`\lambda_1`.

A repeated *zero* eigenvalue, :math:`\lambda_2 \approx \lambda_3 \approx 0` (collinear points,
linear molecules such as CO2; or all points coincident), is flagged separately in
:attr:`Frames.collinear`. The positions have no component along the arbitrary axes, so
every choice gives the same canonical coordinates and the sign average cancels whatever the
backbone outputs along those axes: the result stays equivariant **as long as the positions
are the only geometric input**. Other vector inputs (velocities, normals) with components
off the line are canonicalised by the arbitrary axes, and then the result is not
equivariant; :class:`~equigraph.models.FrameAveraging` counts such graphs as degenerate.

A planar cloud (:math:`\lambda_3 = 0 < \lambda_2 < \lambda_1`) is neither: its normal is
the third axis. Near (not at) a degeneracy the frame is exactly equivariant up to rounding
of order :math:`\varepsilon / \text{gap}`, but jumps under small perturbations, so outputs
are sensitive to noise there; gradients with respect to the positions (through
:func:`torch.linalg.eigh`) grow like :math:`1 / \text{gap}`.
"""
from __future__ import annotations

import itertools
import math
import warnings
from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.utils import scatter

from equigraph.graph.checks import check_batch, check_pos, check_positive_int
from equigraph.symmetry import GROUPS

__all__ = [
    "Frames",
    "DegenerateFrameWarning",
    "pca_frames",
    "local_pca_frames",
    "frame_signs",
    "frame_size",
    "default_tol",
    "has_translations",
    "has_reflections",
    "DegeneracyCounter",
    "check_group",
    "check_tol",
]

#: Smallest number of points of a graph for which a PCA frame is defined.
MIN_POINTS = 3


class DegenerateFrameWarning(UserWarning):
    """Some graphs have (nearly) repeated PCA eigenvalues: their frame-averaged outputs are
    not equivariant (see :mod:`equigraph.nn.frames.pca`, "Degenerate spectra")."""


class DegeneracyCounter:
    """Mixin for modules that build PCA frames: counts the degenerate rows they meet in
    ``num_degenerate`` and warns once per module (:class:`DegenerateFrameWarning`), with
    the count, the first time it meets any."""

    num_degenerate: int = 0
    _warned_degenerate: bool = False

    def report_degenerate(self, mask: Optional[Tensor], what: str, tol: float) -> int:
        """Count the true entries of ``mask`` (rows whose output is not equivariant) and warn
        the first time there are any."""
        if mask is None:
            return 0
        count = int(mask.sum())
        if count:
            self.num_degenerate = self.num_degenerate + count
            if not self._warned_degenerate:
                self._warned_degenerate = True
                warnings.warn(
                    f"{type(self).__name__}: {count} of {mask.numel()} {what} have a degenerate PCA "
                    f"spectrum (relative eigenvalue gap < {tol:.2g}), so their outputs are not equivariant (see "
                    "equigraph.nn.frames.pca, 'Degenerate spectra'); warned once, num_degenerate counts them all",
                    DegenerateFrameWarning, stacklevel=3)
        return count


class Frames(NamedTuple):
    r"""A frame per row (graph, or point for local frames).

    Attributes:
        rotations (Tensor): ``[M, F, 3, 3]`` orthogonal matrices :math:`R`; columns are the
            (signed) principal axes. Element ``(R, t)`` acts as ``x @ R.T + t``.
        translations (Tensor, optional): ``[M, 3]`` shared translation :math:`\mathbf{t}`
            of the row's elements, :obj:`None` for groups without translations.
        eigenvalues (Tensor, optional): ``[M, 3]`` descending covariance eigenvalues.
        degenerate (Tensor, optional): ``[M]`` bool, a non-zero eigenvalue repeated (relative
            gap below ``tol``): outputs are not equivariant.
        collinear (Tensor, optional): ``[M]`` bool, :math:`\lambda_2 \approx 0` (collinear or
            coincident points): equivariant when the positions are the only geometric input.
    """

    rotations: Tensor
    translations: Optional[Tensor] = None
    eigenvalues: Optional[Tensor] = None
    degenerate: Optional[Tensor] = None
    collinear: Optional[Tensor] = None

    @property
    def size(self) -> int:
        """Number of elements per row, ``F``."""
        return self.rotations.size(1)

    def select(self, index: Tensor) -> "Frames":
        """One element per row: ``index`` ``[M]`` picks ``rotations[m, index[m]]`` (stochastic
        frame averaging)."""
        rows = torch.arange(self.rotations.size(0), device=self.rotations.device)
        return self._replace(rotations=self.rotations[rows, index].unsqueeze(1))


def check_group(group: str) -> str:
    """``group`` when it is one of :data:`equigraph.symmetry.GROUPS`, else ``ValueError``."""
    if group not in GROUPS:
        raise ValueError(f"`group` must be one of {sorted(GROUPS)}, got {group!r}")
    return group


def has_translations(group: str) -> bool:
    """Whether ``group`` contains translations (``"E3"``, ``"SE3"``)."""
    return "translation" in GROUPS[check_group(group)]


def has_reflections(group: str) -> bool:
    """Whether ``group`` contains reflections (``"E3"``, ``"O3"``)."""
    return "reflection" in GROUPS[check_group(group)]


def frame_size(group: str) -> int:
    """Elements of a PCA frame: 8 with reflections, 4 without.

    >>> frame_size("E3"), frame_size("SE3")
    (8, 4)
    """
    return 8 if has_reflections(group) else 4


def frame_signs(group: str, dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """``[F, 3]`` sign choices of the principal axes: all 8 with reflections; with rotations
    only, the 4 whose product is +1 (the last sign is flipped where ``det V = -1``).

    >>> frame_signs("SO3").prod(dim=1).tolist()
    [1.0, 1.0, 1.0, 1.0]
    """
    if has_reflections(group):
        signs = list(itertools.product((1.0, -1.0), repeat=3))
    else:
        signs = [s for s in itertools.product((1.0, -1.0), repeat=3) if math.prod(s) > 0]
    return torch.tensor(signs, dtype=dtype, device=device)


def default_tol(dtype: torch.dtype) -> float:
    r"""Default relative eigenvalue gap below which eigenvalues count as repeated:
    :math:`\sqrt{\varepsilon}` of ``dtype`` (3.5e-4 for float32, 1.5e-8 for float64), where
    the rounding error of the eigenvectors, about :math:`\varepsilon / \text{gap}`, reaches
    :math:`\sqrt{\varepsilon}`.

    >>> f"{default_tol(torch.float32):.1e}"
    '3.5e-04'
    """
    return math.sqrt(torch.finfo(dtype).eps)


def check_tol(tol: Optional[float], dtype: torch.dtype) -> float:
    """``tol`` as a float (:func:`default_tol` of ``dtype`` for :obj:`None`); ``ValueError``
    for a negative or non-finite value."""
    if tol is None:
        return default_tol(dtype)
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(tol) or tol < 0:
        raise ValueError(f"`tol` must be a finite number >= 0 or None, got {tol!r}")
    return float(tol)


def _frames_from_covariance(cov: Tensor, group: str, tol: float) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Rotations ``[M, F, 3, 3]``, descending eigenvalues ``[M, 3]`` and the degenerate and
    collinear masks from covariances ``[M, 3, 3]``."""
    evals, evecs = torch.linalg.eigh(cov)
    evals, evecs = evals.flip(-1), evecs.flip(-1)
    signs = frame_signs(group, dtype=cov.dtype, device=cov.device)
    if has_reflections(group):
        rotations = evecs.unsqueeze(1) * signs[None, :, None, :]
    else:
        # Flipping the last axis where det V = -1 makes every element proper.
        det = torch.sign(torch.linalg.det(evecs.detach()))
        det = torch.where(det == 0, torch.ones_like(det), det)
        last = torch.stack([torch.ones_like(det), torch.ones_like(det), det], dim=-1)
        rotations = evecs.unsqueeze(1) * (signs[None] * last[:, None])[:, :, None, :]
    lam = evals.detach().clamp(min=0)
    small = tol * lam[:, 0]
    collinear = lam[:, 1] <= small  # also all-coincident points (lam_1 = 0)
    degenerate = ~collinear & ((lam[:, 0] - lam[:, 1] <= small) | (lam[:, 1] - lam[:, 2] <= small))
    return rotations, evals, degenerate, collinear


def pca_frames(
    pos: Tensor,
    batch: Optional[Tensor] = None,
    group: str = "E3",
    *,
    num_graphs: Optional[int] = None,
    tol: Optional[float] = None,
) -> Frames:
    r"""The PCA frame of every graph of a batch, with one batched
    :func:`torch.linalg.eigh` (no loop over graphs).

    Differentiable with respect to ``pos`` (through the eigenvectors), so forces of a
    frame-averaged energy include the motion of the frame.

    Args:
        pos (Tensor): node positions.
        batch (Tensor, optional): graph index of every node, in any order.
            (default: :obj:`None`, one graph)
        group (str, optional): ``"E3"``, ``"SE3"``, ``"O3"`` or ``"SO3"``. (default: :obj:`"E3"`)
        num_graphs (int, optional): number of graphs ``G``. (default: ``batch.max() + 1``)
        tol (float, optional): relative eigenvalue gap below which a graph is flagged
            degenerate. (default: :func:`default_tol` of ``pos.dtype``)

    Shapes:
        - **input:** pos :math:`(N, 3)`, batch :math:`(N)`
        - **output:** :class:`Frames` with rotations :math:`(G, F, 3, 3)`, translations
          :math:`(G, 3)` (or :obj:`None`), eigenvalues :math:`(G, 3)`, degenerate and
          collinear :math:`(G)`

    Raises:
        ValueError: for positions that are not a finite ``[N, 3]`` float tensor, a graph
            with fewer than 3 points, or an unknown ``group``.

    Example:
        >>> pos = torch.tensor([[0.0, 0, 0], [4, 0, 0], [0, 2, 0], [0, 0, 1]])
        >>> frames = pca_frames(pos)
        >>> frames.rotations.shape, frames.degenerate.tolist()
        (torch.Size([1, 8, 3, 3]), [False])
        >>> canonical = (pos - frames.translations) @ frames.rotations[0, 0]
        >>> rotated = pos @ torch.linalg.qr(torch.randn(3, 3)).Q.T
        >>> again = pca_frames(rotated)
        >>> copies = lambda p, f: torch.stack([(p - f.translations) @ R for R in f.rotations[0]])
        >>> a, b = copies(pos, frames), copies(rotated, again)
        >>> bool(torch.cdist(a.flatten(1), b.flatten(1)).min(dim=1).values.max() < 1e-4)
        True
    """
    check_group(group)
    pos = check_pos(pos)
    n = pos.size(0)
    tol = check_tol(tol, pos.dtype)
    batch = check_batch(batch, n, device=pos.device)
    if n == 0:
        raise ValueError("`pos` has no points: a PCA frame needs at least 3 points per graph")
    if num_graphs is None:
        num_graphs = int(batch.max()) + 1
    counts = torch.bincount(batch, minlength=num_graphs)
    if counts.numel() != num_graphs:
        raise ValueError(f"`batch` refers to graph {counts.numel() - 1} but `num_graphs` is {num_graphs}")
    small = (counts < MIN_POINTS).nonzero().flatten()
    if small.numel():
        small = small[:5].tolist()
        raise ValueError(f"`pos`: a PCA frame needs at least {MIN_POINTS} points per graph; graph(s) {small} "
                         f"have {counts[small].tolist()} point(s)")
    if has_translations(group):
        centre = scatter(pos, batch, dim=0, dim_size=num_graphs, reduce="mean")
        x = pos - centre[batch]
    else:
        centre, x = None, pos
    cov = scatter(x.unsqueeze(-1) * x.unsqueeze(-2), batch, dim=0, dim_size=num_graphs, reduce="sum")
    rotations, evals, degenerate, collinear = _frames_from_covariance(cov, group, tol)
    return Frames(rotations, centre, evals, degenerate, collinear)


def local_pca_frames(
    pos: Tensor,
    neighbours: Tensor,
    group: str = "E3",
    *,
    tol: Optional[float] = None,
) -> Frames:
    r"""A PCA frame per point from its neighbourhood (FA-Local, Puny et al. Sec. 5.2):
    the frame of point :math:`i` is the PCA frame of the points ``pos[neighbours[i]]``,
    centred at their centroid for groups with translations.

    Args:
        pos (Tensor): ``[N, 3]`` positions.
        neighbours (Tensor): ``[N, k]`` long, the neighbourhood of each point (usually its
            ``k`` nearest points including itself, :func:`equigraph.nn.frames.knn_index`).
        group (str, optional): as in :func:`pca_frames`. (default: :obj:`"E3"`)
        tol (float, optional): as in :func:`pca_frames`.

    Shapes:
        - **input:** pos :math:`(N, 3)`, neighbours :math:`(N, k)`, :math:`k \ge 3`
        - **output:** :class:`Frames` with rotations :math:`(N, F, 3, 3)`, translations
          :math:`(N, 3)` (local centroids, or :obj:`None`), eigenvalues :math:`(N, 3)`,
          degenerate and collinear :math:`(N)`

    Example:
        >>> pos = torch.tensor([[0.0, 0, 0], [3, 0, 0], [0, 2, 0], [0, 0, 1]])
        >>> frames = local_pca_frames(pos, torch.tensor([[0, 1, 2, 3]] * 4))
        >>> frames.rotations.shape
        torch.Size([4, 8, 3, 3])
    """
    check_group(group)
    pos = check_pos(pos)
    tol = check_tol(tol, pos.dtype)
    if not isinstance(neighbours, Tensor) or neighbours.dim() != 2 or neighbours.size(0) != pos.size(0):
        shape = list(neighbours.shape) if isinstance(neighbours, Tensor) else type(neighbours).__name__
        raise ValueError(f"`neighbours` must be a [N={pos.size(0)}, k] index tensor, got {shape}")
    check_positive_int(neighbours.size(1), "k")
    if neighbours.size(1) < MIN_POINTS:
        raise ValueError(f"`neighbours`: a local PCA frame needs at least {MIN_POINTS} points per "
                         f"neighbourhood, got k = {neighbours.size(1)}")
    patch = pos[neighbours]  # [N, k, 3]
    if has_translations(group):
        centre = patch.mean(dim=1)
        x = patch - centre.unsqueeze(1)
    else:
        centre, x = None, patch
    cov = x.transpose(1, 2) @ x
    rotations, evals, degenerate, collinear = _frames_from_covariance(cov, group, tol)
    return Frames(rotations, centre, evals, degenerate, collinear)
