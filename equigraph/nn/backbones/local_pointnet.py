"""FA-Local-PointNet: PointNet on neighbourhoods canonicalised by local PCA frames."""
from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import Tensor
from torch_geometric.nn import MLP

from equigraph.data import keys as K
from equigraph.nn.frames.knn import knn_index
from equigraph.nn.frames.pca import DegeneracyCounter, check_group, check_tol, local_pca_frames
from equigraph.nn.frames.transform import frame_transform

from ._common import PooledBackbone, check_widths, int_at_least, read_points, resolve_output

__all__ = ["FALocalPointNet"]


class FALocalPointNet(DegeneracyCounter, PooledBackbone):
    r"""FA-Local-PointNet after `"Frame Averaging for Invariant and Equivariant Network
    Design" <https://arxiv.org/abs/2110.03336>`_ (Puny et al. 2022, normal estimation):
    every point gets the PCA frame :math:`\mathcal{F}_i` of its ``k`` nearest points
    (:func:`equigraph.nn.frames.local_pca_frames`), a PointNet encodes its neighbourhood in
    each frame element, and the per-point prediction made in each element is moved back and
    averaged, so the model is equivariant by construction, without a global frame:

    .. math::
        \mathbf{e}_{i,g} = \max_{j \in \mathrm{kNN}(i)}
            \mathrm{MLP}_1\big([g^{-1}\mathbf{x}_j, \mathbf{f}_j]\big), \quad
        \mathbf{c} = \max_{i} \mathrm{MLP}_2\Big(\tfrac{1}{|\mathcal{F}_i|}
            \textstyle\sum_{g} \mathbf{e}_{i,g}\Big), \quad
        \mathbf{y}_i = \frac{1}{|\mathcal{F}_i|} \sum_{g \in \mathcal{F}_i}
            g \cdot \mathrm{MLP}_3([\mathbf{e}_{i,g}, \mathbf{c}])

    The cloud feature :math:`\mathbf{c}` pools invariant per-point features, so
    per-cloud outputs (``level="graph"``) must be ``"scalar"``. Points whose neighbourhood
    has a repeated non-zero eigenvalue (symmetric neighbourhoods, e.g. on a lattice) are not
    equivariant; they are counted in ``num_degenerate`` and warned about once
    (:class:`equigraph.nn.frames.DegenerateFrameWarning`). Collinear neighbourhoods are exact.

    Args:
        out_channels (int, optional): width of ``"y"``. (default: from ``out_type``)
        out_type (str, optional): equivariance type of ``"y"``. (default: :obj:`"vector"`)
        level (str, optional): ``"node"`` or ``"graph"``. (default: :obj:`"node"`)
        k (int, optional): neighbourhood size, the point included (at least 3; every cloud
            needs ``k`` points). (default: :obj:`16`)
        group (str, optional): ``"E3"``, ``"SE3"``, ``"O3"`` or ``"SO3"``. (default: :obj:`"E3"`)
        in_channels (int, optional): width of invariant ``data.x`` features. (default: :obj:`0`)
        hidden_channels (int, optional): width of the MLPs. (default: :obj:`64`)
        global_channels (int, optional): width of the cloud feature. (default: :obj:`256`)
        num_layers (int, optional): layers of the neighbourhood MLP. (default: :obj:`2`)
        act (str, optional): activation. (default: :obj:`"relu"`)
        tol (float, optional): degeneracy tolerance of the local spectra.
            (default: :func:`equigraph.nn.frames.default_tol`)

    Shapes:
        - **input:** ``pos`` :math:`(N, 3)`, optionally ``x`` :math:`(N, F_{in})`,
          ``batch`` :math:`(N)`
        - **output:** ``{"y": (N, C)}`` or ``{"y": (G, C)}``

    Example:
        >>> from torch_geometric.data import Data
        >>> model = FALocalPointNet(k=4, hidden_channels=8, global_channels=16)
        >>> model(Data(pos=torch.randn(10, 3)))["y"].shape
        torch.Size([10, 3])
    """

    def __init__(
        self,
        out_channels: Optional[int] = None,
        out_type: str = "vector",
        level: str = "node",
        k: int = 16,
        group: str = "E3",
        in_channels: int = 0,
        hidden_channels: int = 64,
        global_channels: int = 256,
        num_layers: int = 2,
        act: str = "relu",
        tol: Optional[float] = None,
    ):
        super().__init__()
        name = type(self).__name__
        self.out_type, self.level, self.out_channels = resolve_output(out_type, level, out_channels, name)
        if level == "graph" and self.out_type != "scalar":
            raise ValueError(f"{name}: per-cloud outputs pool invariant features, so they must be 'scalar', "
                             f"got {self.out_type!s}")
        self.k = int_at_least(k, 1, "k", name)
        if self.k < 3:
            raise ValueError(f"{name}: k must be at least 3 (a local PCA frame needs 3 points), got {k}")
        self.group = check_group(group)
        self.in_channels, self.hidden_channels, self.global_channels, self.num_layers = check_widths(
            in_channels, hidden_channels, global_channels, num_layers, name)
        if tol is not None:
            check_tol(tol, torch.float64)
        self.tol = tol
        # Submodules initialise themselves on construction; fork_rng keeps those draws off the
        # global generator, so a model built after torch.manual_seed(s) equals one reset after it.
        with torch.random.fork_rng(devices=[]):
            self.local = MLP([3 + in_channels] + [hidden_channels] * num_layers, act=act, norm=None, plain_last=False)
            self.build_readout(hidden_channels, act, None)
        self.reset_parameters()

    def forward(self, data) -> Dict[str, Tensor]:
        pos, batch, x = read_points(data, self.in_channels, type(self).__name__)
        neighbours = knn_index(pos, self.k, batch)
        frames = local_pca_frames(pos, neighbours, self.group, tol=self.tol)
        # Collinear neighbourhoods are harmless: the only geometric input is the positions.
        self.report_degenerate(frames.degenerate, "points", check_tol(self.tol, pos.dtype))
        n, num_frames = pos.size(0), frames.size
        patch = pos[neighbours].unsqueeze(1).expand(n, num_frames, self.k, 3)
        canonical = frame_transform(patch, "point", frames.rotations, frames.translations, inverse=True)
        if x is not None:
            canonical = torch.cat([canonical, x[neighbours].unsqueeze(1).expand(-1, num_frames, -1, -1)], dim=-1)
        e = self.local(canonical).amax(dim=2)  # [N, F, hidden]
        c = self.pool(e.mean(dim=1), batch, data)
        if self.level == "graph":
            return {K.Y: self.head(c)}
        y = self.head(torch.cat([e, c[batch].unsqueeze(1).expand(-1, num_frames, -1)], dim=-1))
        return {K.Y: frame_transform(y, self.out_type, frames.rotations, frames.translations).mean(dim=1)}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(out_type={self.out_type!s}, level={self.level}, k={self.k}, "
                f"group={self.group}, hidden_channels={self.hidden_channels})")
