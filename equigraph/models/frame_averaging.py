r"""Frame averaging and group averaging: make any network on PyG data invariant or
equivariant, after Puny et al., `"Frame Averaging for Invariant and Equivariant Network
Design" <https://arxiv.org/abs/2110.03336>`_ (ICLR 2022).

.. math::
    \langle \Phi \rangle(X) = \frac{1}{|\mathcal{F}(X)|} \sum_{g \in \mathcal{F}(X)}
    g \cdot \Phi(g^{-1} \cdot X)

:class:`FrameAveraging` uses the PCA frame :math:`\mathcal{F}(X)` of every graph (8 elements
for E(3)/O(3), 4 for SE(3)/SO(3), :mod:`equigraph.nn.frames.pca`); :class:`GroupAveraging`
a fixed finite group (the cube's 24 rotations or 48 symmetries, or a fixed sample of
rotations). Both run the backbone **once**, on all copies stacked in one batch, and map
each output back by its declared type. This module also registers the backbones of
:mod:`equigraph.nn.backbones` (``"pointnet"``, ``"dgcnn"``, ``"gnn"``,
``"fa_local_pointnet"``) so that configs can nest them::

    model: {name: frame_averaging, group: E3, backbone: {name: dgcnn, out_type: vector, level: node}}
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import scatter

from equigraph.data import keys as K
from equigraph.graph import check_pos
from equigraph.nn.backbones import DGCNN, GNN, FALocalPointNet, PointNet
from equigraph.nn.frames import (
    DegeneracyCounter,
    Frames,
    average_outputs,
    canonicalize,
    check_group,
    check_tol,
    finite_group,
    frame_size,
    num_graphs_of,
    pca_frames,
)
from equigraph.symmetry import TypeSpec, parse_type

from .contract import LEVELS, EquigraphModel, Output, declared_outputs
from .registry import build_model, register_model

__all__ = ["FrameAveraging", "GroupAveraging"]

register_model("pointnet")(PointNet)
register_model("dgcnn")(DGCNN)
register_model("gnn")(GNN)
register_model("fa_local_pointnet")(FALocalPointNet)

#: Inputs transformed with the positions when ``in_types`` is not given (those present).
DEFAULT_IN_TYPES = {K.VEL: "vector", K.CELL: "cell"}


def _as_output(key: str, spec: Any) -> Output:
    """An :class:`Output` from ``Output``, a type (graph-level), ``(type, level)`` or
    ``{type:, level:}`` (config files)."""
    if isinstance(spec, Output):
        return spec
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"type", "level"}
        if unknown:
            raise ValueError(f"outputs[{key!r}]: unknown field(s) {sorted(unknown)}; expected 'type' and 'level'")
        return Output(parse_type(spec.get("type", "scalar"), key), spec.get("level", "graph"))
    if isinstance(spec, (tuple, list)):
        if len(spec) != 2:
            raise ValueError(f"outputs[{key!r}] must be a type, an Output or a (type, level) pair, got {spec!r}")
        return Output(parse_type(spec[0], key), spec[1])
    return Output(parse_type(spec, key))


def _as_input(key: str, spec: Any) -> Tuple[TypeSpec, Optional[str]]:
    if isinstance(spec, Output):
        return spec.type, spec.level
    if isinstance(spec, (tuple, list)) and len(spec) == 2:
        if spec[1] not in LEVELS:
            raise ValueError(f"in_types[{key!r}]: level must be one of {LEVELS}, got {spec[1]!r}")
        return parse_type(spec[0], key), spec[1]
    return parse_type(spec, key), None


class _Averaging(DegeneracyCounter, EquigraphModel):
    """What frame and group averaging share: the backbone, the declarations, the
    replication and the mapping back (:mod:`equigraph.nn.frames.averaging`)."""

    def __init__(self, backbone, outputs, in_types, stochastic: bool):
        super().__init__()
        name = type(self).__name__
        if isinstance(backbone, (str, Mapping)):
            backbone = build_model(backbone)
        if not callable(backbone):
            raise ValueError(f"{name}: backbone must be a module, a callable, a model name or a model spec "
                             f"{{name: ...}}, got {type(backbone).__name__}")
        self.backbone = backbone
        declared = dict(declared_outputs(backbone) or {})
        if outputs is not None:
            if not isinstance(outputs, Mapping):
                raise ValueError(f"{name}: outputs must be a dict {{key: type or Output}}, "
                                 f"got {type(outputs).__name__}")
            declared.update({str(k): _as_output(str(k), v) for k, v in outputs.items()})
        if not declared:
            raise ValueError(f"{name}: the backbone declares no outputs (no `outputs` mapping of Output); pass "
                             "outputs=, e.g. {'y': 'scalar'} or {'y': Output('vector', 'node')}")
        self._declared: Dict[str, Output] = declared
        if in_types is not None and not isinstance(in_types, Mapping):
            raise ValueError(f"{name}: in_types must be a dict {{data key: type}}, got {type(in_types).__name__}")
        self._in_types = None if in_types is None else {str(k): _as_input(str(k), v) for k, v in in_types.items()}
        if self._in_types is not None and self._in_types.get(K.POS, ("point",))[0] != "point":
            raise ValueError(f"{name}: in_types[{K.POS!r}] must be 'point' (the frames are built from it)")
        self.stochastic = bool(stochastic)

    # -- contract -------------------------------------------------------------------------
    @property
    def outputs(self) -> Dict[str, Output]:
        """The backbone's declared outputs (updated by ``outputs=``), unchanged by averaging."""
        return dict(self._declared)

    @property
    def cutoff(self) -> Optional[float]:
        return getattr(self.backbone, "cutoff", None)

    def normalizer(self, key: str):
        normalizer = getattr(self.backbone, "normalizer", None)
        return normalizer(key) if callable(normalizer) else None

    def reset_parameters(self):
        reset = getattr(self.backbone, "reset_parameters", None)
        if callable(reset):
            reset()

    # -- averaging ------------------------------------------------------------------------
    def frames(self, data, pos: Tensor, batch: Optional[Tensor], num_graphs: int) -> Frames:
        raise NotImplementedError

    def input_types(self, data) -> Dict[str, Tuple[TypeSpec, Optional[str]]]:
        """``{key: (type, level)}`` of the inputs moved with the positions for ``data``."""
        types = {K.POS: ("point", "node")}
        if self._in_types is None:
            present = {k: t for k, t in DEFAULT_IN_TYPES.items() if isinstance(getattr(data, k, None), Tensor)}
            types.update({k: (t, None) for k, t in present.items()})
        else:
            types.update(self._in_types)
        return types

    def forward(self, data) -> Dict[str, Tensor]:
        name = type(self).__name__
        if not isinstance(data, Data):
            raise ValueError(f"{name}: data must be a torch_geometric Data or Batch, got {type(data).__name__}")
        pos = getattr(data, K.POS, None)
        if pos is None:
            raise ValueError(f"{name}: data.{K.POS} is missing")
        pos = check_pos(pos, f"data.{K.POS}")
        G = num_graphs_of(data)
        frames = self.frames(data, pos, getattr(data, K.BATCH, None), G)
        if self.stochastic and self.training:
            pick = torch.randint(frames.size, (G,), device=pos.device)
            frames = frames.select(pick)
        copies = canonicalize(data, frames, self.input_types(data), G)
        raw = self.backbone(copies)
        if isinstance(raw, Tensor):
            raw = {K.Y: raw}
        elif not isinstance(raw, Mapping):
            raise ValueError(f"{name}: the backbone must return a Tensor or a dict of Tensors, got "
                             f"{type(raw).__name__}")
        missing = [k for k in self._declared if k not in raw]
        if missing:
            raise ValueError(f"{name}: the backbone did not return the declared output(s) {missing}")
        declarations = {k: (o.type, o.level) for k, o in self._declared.items()}
        return average_outputs(dict(raw), frames, declarations, data, G)


@register_model("frame_averaging")
class FrameAveraging(_Averaging):
    r"""Frame averaging (Puny et al., `"Frame Averaging for Invariant and Equivariant
    Network Design" <https://arxiv.org/abs/2110.03336>`_, ICLR 2022) with PCA frames: wraps
    any network on PyG data so that its outputs become exactly invariant or equivariant
    under ``group``.

    .. math::
        \langle \Phi \rangle(X) = \frac{1}{|\mathcal{F}(X)|} \sum_{g \in \mathcal{F}(X)}
        g \cdot \Phi(g^{-1} \cdot X), \qquad
        \mathcal{F}(X) = \{([\pm\mathbf{v}_1, \pm\mathbf{v}_2, \pm\mathbf{v}_3], \mathbf{t})\}

    with :math:`\mathbf{t}` the centroid and :math:`\mathbf{v}_k` the principal axes of each
    graph (:func:`equigraph.nn.frames.pca_frames`). The backbone runs **once** on a batch of
    ``|F| * G`` graphs, copy ``f`` of graph ``g`` canonicalised by :math:`g_f^{-1}`:
    ``pos`` as a point, and the other inputs of ``in_types`` (``vel``, normals, forces, ...)
    by their types; ``edge_index`` and every other attribute are replicated with the right
    offsets, or the backbone builds its own graph (e.g. kNN on the canonical coordinates).
    Each output is mapped back by its declared type (:data:`equigraph.symmetry.TYPES`) and
    averaged: scalars averaged, vectors rotated back, points rotated and translated back,
    pseudo-types with :math:`\det R`, irreps by their Wigner matrices.

    The declaration of each output (type and level) is the backbone's own
    (:func:`equigraph.models.contract.declared_outputs`), updated by ``outputs=``; a
    backbone that returns a plain Tensor has it returned as ``"y"``. The wrapper's
    :attr:`outputs` is the same declaration.

    With ``stochastic=True`` a training-mode forward uses one random frame element per graph
    (equivariant in distribution, ``|F|`` times cheaper); ``eval()`` uses the full average.

    Graphs need at least 3 points. Graphs with a degenerate spectrum (a repeated non-zero
    eigenvalue: symmetric molecules; see :mod:`equigraph.nn.frames.pca`) get a finite
    output that is **not** equivariant; they are counted in ``num_degenerate`` and warned
    about once (:class:`equigraph.nn.frames.DegenerateFrameWarning`). Collinear graphs
    (linear molecules) are exact when the positions are the only geometric input, and
    counted as degenerate otherwise. Periodic data: ``cell``
    is rotated with the positions, but a PCA frame of wrapped positions is not invariant to
    lattice translations.

    Args:
        backbone (Module, callable, str or dict): the network, called as
            ``backbone(batch)``, returning a Tensor or a dict of Tensors; a registry name or
            spec ``{name: ..., **kwargs}`` is built with :func:`~equigraph.models.build_model`.
        group (str, optional): ``"E3"``, ``"SE3"``, ``"O3"`` or ``"SO3"``: with reflections
            8 frame elements, without 4; with translations the frames are centred at the
            centroid. (default: :obj:`"E3"`)
        outputs (dict, optional): ``{key: Output | type | (type, level)}``; a bare type is
            graph-level. Needed when the backbone declares nothing. (default: :obj:`None`)
        in_types (dict, optional): ``{data key: type | Output | (type, level)}`` of the
            inputs to move with the positions (``pos`` is always a point); replaces the
            default ``{vel: "vector", cell: "cell"}`` (those present). (default: :obj:`None`)
        stochastic (bool, optional): one random frame element per graph in training mode.
            (default: :obj:`False`)
        tol (float, optional): relative eigenvalue gap below which a spectrum counts as
            degenerate. (default: :func:`equigraph.nn.frames.default_tol` of the positions)

    Shapes:
        - **input:** a ``Data`` / ``Batch`` with ``pos`` :math:`(N, 3)` and whatever the
          backbone reads
        - **output:** the backbone's outputs, one row per node, graph or edge of the input

    Example:
        >>> from torch_geometric.data import Data
        >>> from equigraph.testing import assert_equivariant
        >>> mlp = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
        >>> model = FrameAveraging(lambda data: mlp(data.pos), outputs={"y": Output("vector", "node")})
        >>> data = Data(pos=torch.randn(6, 3) * torch.tensor([3.0, 2.0, 1.0]))
        >>> model(data)["y"].shape
        torch.Size([6, 3])
        >>> errors = assert_equivariant(model, data, out_types={"y": "vector"})
    """

    def __init__(
        self,
        backbone: Union[torch.nn.Module, Callable, Mapping[str, Any], str],
        group: str = "E3",
        outputs: Optional[Mapping[str, Any]] = None,
        in_types: Optional[Mapping[str, Any]] = None,
        stochastic: bool = False,
        tol: Optional[float] = None,
    ):
        super().__init__(backbone, outputs, in_types, stochastic)
        self.group = check_group(group)
        if tol is not None:
            check_tol(tol, torch.float64)
        self.tol = tol

    @property
    def frame_size(self) -> int:
        """Elements per frame: 8 with reflections, 4 without."""
        return frame_size(self.group)

    def frames(self, data, pos: Tensor, batch: Optional[Tensor], num_graphs: int) -> Frames:
        frames = pca_frames(pos, batch, self.group, num_graphs=num_graphs, tol=self.tol)
        broken = frames.degenerate
        # Collinear positions are harmless unless other geometric inputs reach off the line.
        if any(key != K.POS and type_ != "scalar" for key, (type_, _) in self.input_types(data).items()):
            broken = broken | frames.collinear
        self.report_degenerate(broken, "graphs", check_tol(self.tol, pos.dtype))
        return frames

    def extra_repr(self) -> str:
        return f"group={self.group}, frame_size={self.frame_size}, stochastic={self.stochastic}"


@register_model("group_averaging")
class GroupAveraging(_Averaging):
    r"""Averaging over a fixed finite set of rotations :math:`G` (Puny et al. 2022, Sec. 2:
    the frame :math:`\mathcal{F}(X) = G` for every input):

    .. math::
        \langle \Phi \rangle(X) = \frac{1}{|G|} \sum_{R \in G}
        (R, \mathbf{t}) \cdot \Phi\big((R, \mathbf{t})^{-1} \cdot X\big)

    with :math:`\mathbf{t}` the centroid of each graph when ``center`` (translation
    equivariance) and :math:`0` otherwise. For a group (``"octahedral"``: the 24 rotations of
    the cube; ``"full_octahedral"``: its 48 symmetries with reflections) the result is
    exactly equivariant to the elements of :math:`G` (and only approximately to other
    rotations); a fixed random sample of rotations (``group=m``) is not a group and gives
    approximate equivariance only. It shares the replication and the mapping of outputs
    with :class:`FrameAveraging` (same ``outputs``, ``in_types``, ``stochastic``).

    Args:
        backbone (Module, callable, str or dict): as in :class:`FrameAveraging`.
        group (str, int or Tensor, optional): ``"octahedral"``, ``"full_octahedral"``, a
            number of random rotations (drawn with ``seed``, identity first) or an
            ``[m, 3, 3]`` tensor of orthogonal matrices. (default: :obj:`"octahedral"`)
        outputs (dict, optional): as in :class:`FrameAveraging`.
        in_types (dict, optional): as in :class:`FrameAveraging`.
        center (bool, optional): rotate about each graph's centroid, which makes the
            result translation equivariant. (default: :obj:`True`)
        stochastic (bool, optional): one random element per graph in training mode.
            (default: :obj:`False`)
        seed (int, optional): seed of a random sample. (default: :obj:`0`)

    Example:
        >>> from torch_geometric.data import Data
        >>> lin = torch.nn.Linear(3, 1)
        >>> model = GroupAveraging(lambda data: lin(data.pos), outputs={"y": ("scalar", "node")})
        >>> data = Data(pos=torch.randn(5, 3))
        >>> R = model.rotations[7].float()
        >>> torch.allclose(model(Data(pos=data.pos @ R.T))["y"], model(data)["y"], atol=1e-5)
        True
    """

    def __init__(
        self,
        backbone: Union[torch.nn.Module, Callable, Mapping[str, Any], str],
        group: Union[str, int, Tensor] = "octahedral",
        outputs: Optional[Mapping[str, Any]] = None,
        in_types: Optional[Mapping[str, Any]] = None,
        center: bool = True,
        stochastic: bool = False,
        seed: int = 0,
    ):
        super().__init__(backbone, outputs, in_types, stochastic)
        self.group_name = group if isinstance(group, (str, int)) else f"{group.size(0)} matrices"
        # Not persistent: the spec rebuilds it, and a state dict stays the backbone's.
        self.register_buffer("rotations", finite_group(group, seed), persistent=False)
        self.center = bool(center)

    @property
    def frame_size(self) -> int:
        """Number of group elements."""
        return self.rotations.size(0)

    def frames(self, data, pos: Tensor, batch: Optional[Tensor], num_graphs: int) -> Frames:
        rotations = self.rotations.to(device=pos.device, dtype=pos.dtype).unsqueeze(0).expand(num_graphs, -1, -1, -1)
        centre = None
        if self.center:
            if batch is None:
                batch = torch.zeros(pos.size(0), dtype=torch.long, device=pos.device)
            centre = scatter(pos, batch, dim=0, dim_size=num_graphs, reduce="mean")
        return Frames(rotations, centre)

    def extra_repr(self) -> str:
        return (f"group={self.group_name}, frame_size={self.frame_size}, center={self.center}, "
                f"stochastic={self.stochastic}")
