"""The Tensor Field Network convolution of Thomas et al. (2018), on e3nn."""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Union

import torch
from e3nn import o3
from torch import Tensor
from torch_geometric.nn import MessagePassing
from torch_geometric.nn.resolver import activation_resolver
from torch_geometric.utils import scatter

from ..cutoff import PolynomialCutoff
from ..geometry import DEFAULT_EPS, check_edge_vec_inputs, edge_length_and_unit, edge_vec_unchecked
from ..radial import BesselBasis
from ..steerable._precision import ExactConstants, float64_default
from ..steerable.attributes import check_edge_lengths
from ..steerable.cueq import CueqTensorProduct, check_tp_backend
from ..steerable.irreps import as_irreps


def _reset_linear(linear: o3.Linear) -> None:
    # e3nn's own initialisation (standard normal weights; its path normalization scales
    # them), so that a reset layer equals a fresh one built after the same seed.
    with torch.no_grad():
        if linear.weight.numel():
            linear.weight.normal_()
        if linear.bias.numel():
            linear.bias.zero_()


class TFNConv(ExactConstants, MessagePassing):
    r"""The Tensor Field Network convolution from the `"Tensor field networks: Rotation- and
    translation-equivariant neural networks for 3D point clouds"
    <https://arxiv.org/abs/1802.08219>`_ paper (Thomas et al., 2018), in the form NequIP
    uses (`Batzner et al., 2022 <https://arxiv.org/abs/2101.03164>`_): a filter made of a
    learned radial function times spherical harmonics, combined with the neighbour's
    features by a Clebsch-Gordan tensor product, then a self-interaction (linear) layer:

    .. math::
        \mathbf{f}_i' = W_\mathrm{out}\left(\frac{1}{\sqrt{\bar{n}}}
            \sum_{j \in \mathcal{N}(i)} \Big(R(\|\mathbf{r}_{ij}\|)\, u(\|\mathbf{r}_{ij}\|)\Big)
            \odot \left(\mathbf{f}_j \otimes Y(\hat{\mathbf{r}}_{ij})\right)\right)
            \;\left(+\; W_\mathrm{self}\, \mathbf{f}_i\right)

    :math:`\mathbf{r}_{ij}` is the edge vector of :func:`equigraph.nn.edge_vec` (periodic
    images included), :math:`Y` the spherical harmonics up to ``lmax``,
    :math:`\otimes` e3nn's :class:`~e3nn.o3.TensorProduct` in ``"uvu"`` mode (one path per
    input irrep, harmonic and output irrep, channel-wise, as TFN's radial functions are per
    channel) with per-edge weights :math:`R`: an MLP over the radial basis (default
    :class:`~equigraph.nn.BesselBasis`), multiplied by the cutoff envelope :math:`u`
    (default :class:`~equigraph.nn.PolynomialCutoff`) so that messages vanish smoothly at the
    cutoff. :math:`W_\mathrm{out}` and :math:`W_\mathrm{self}` are e3nn
    :class:`~e3nn.o3.Linear` layers (self-interaction); :math:`\bar{n}` is the constant
    ``avg_num_neighbors`` (NequIP divides by its square root; 1 if :obj:`None`). Only
    paths that reach an irrep of ``irreps_out`` are kept. Gates between layers belong to
    the model (:class:`~equigraph.nn.steerable.Gate`: use its ``irreps_in`` as this
    layer's ``irreps_out``). A zero-length edge raises a ``ValueError`` naming it unless
    ``allow_zero_length`` (then only its :math:`Y_0` part contributes).

    Args:
        irreps_in (irreps): irreps of :math:`\mathbf{f}`.
        irreps_out (irreps): irreps of :math:`\mathbf{f}'`.
        lmax (int, optional): highest order of the spherical harmonics. (default: :obj:`2`)
        cutoff (float, optional): cutoff radius in Å, for the default basis and envelope.
            (default: :obj:`5.0`)
        radial_basis (torch.nn.Module, optional): distances ``[E]`` to ``[E, B]``, with a
            ``num_basis`` attribute. (default: ``BesselBasis(8, cutoff)``)
        cutoff_fn (torch.nn.Module, optional): distances ``[E]`` to envelope ``[E]``.
            (default: ``PolynomialCutoff(cutoff, p=6)``)
        radial_hidden (sequence of int, optional): hidden widths of the radial MLP.
            (default: :obj:`(64,)`)
        act (str or callable, optional): activation of the radial MLP. (default: :obj:`"silu"`)
        avg_num_neighbors (float, optional): :math:`\bar{n}`. (default: :obj:`None`)
        self_interaction (bool, optional): add :math:`W_\mathrm{self}\mathbf{f}_i`.
            (default: :obj:`True`)
        allow_zero_length (bool, optional): accept zero-length edges. (default: :obj:`False`)
        validate (bool, optional): check the inputs (shapes, indices, zero-length edges)
            in every call; a model that checks them once per forward builds its layers with
            :obj:`False`. (default: :obj:`True`)
        tp_backend (str, optional): what computes the tensor product, ``"e3nn"`` or
            ``"cueq"`` (NVIDIA cuEquivariance, ``pip install cuequivariance-torch``): the
            same function of the same weights, see
            :class:`~equigraph.nn.steerable.CueqTensorProduct`. (default: ``"e3nn"``)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing` (aggregation fixed to ``"sum"``).

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, \text{irreps\_in.dim})`,
          positions :math:`(|\mathcal{V}|, 3)`,
          edge indices :math:`(2, |\mathcal{E}|)` (``[0]`` neighbour :math:`j`, ``[1]``
          centre :math:`i`),
          shifts :math:`(|\mathcal{E}|, 3)`, cells :math:`(G, 3, 3)`, batch vector
          :math:`(|\mathcal{V}|)` *(optional, periodic graphs)*
        - **output:** node features :math:`(|\mathcal{V}|, \text{irreps\_out.dim})`

    Example:
        >>> import torch
        >>> conv = TFNConv("4x0e", "4x0e+2x1o", lmax=1, cutoff=3.0)
        >>> x, pos = torch.randn(3, 4), torch.randn(3, 3)
        >>> edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
        >>> conv(x, pos, edge_index).shape
        torch.Size([3, 10])
    """

    def __init__(
        self,
        irreps_in,
        irreps_out,
        lmax: int = 2,
        cutoff: float = 5.0,
        radial_basis: Optional[torch.nn.Module] = None,
        cutoff_fn: Optional[torch.nn.Module] = None,
        radial_hidden: Sequence[int] = (64,),
        act: Union[str, Callable] = "silu",
        avg_num_neighbors: Optional[float] = None,
        self_interaction: bool = True,
        allow_zero_length: bool = False,
        validate: bool = True,
        tp_backend: str = "e3nn",
        **kwargs,
    ):
        if kwargs.get("aggr", "sum") not in ("add", "sum"):
            raise ValueError(f"aggr: TFNConv sums messages over neighbours, got {kwargs['aggr']!r}")
        kwargs["aggr"] = "sum"
        if kwargs.get("flow", "source_to_target") != "source_to_target":
            raise ValueError("flow: TFNConv follows edge_index[0] = neighbour, edge_index[1] = centre "
                             f"('source_to_target'), got {kwargs['flow']!r}")
        super().__init__(**kwargs)
        self.irreps_in = as_irreps(irreps_in, "irreps_in")
        self.irreps_out = as_irreps(irreps_out, "irreps_out")
        for name in ("irreps_in", "irreps_out"):
            if getattr(self, name).dim == 0:
                raise ValueError(f"{name} is empty")
        if not isinstance(lmax, int) or isinstance(lmax, bool) or lmax < 0:
            raise ValueError(f"lmax must be an int >= 0, got {lmax!r}")
        if not (isinstance(cutoff, (int, float)) and not isinstance(cutoff, bool) and math.isfinite(cutoff)
                and cutoff > 0):
            raise ValueError(f"cutoff must be a finite number > 0, got {cutoff!r}")
        if avg_num_neighbors is not None and not (isinstance(avg_num_neighbors, (int, float))
                                                  and math.isfinite(avg_num_neighbors) and avg_num_neighbors > 0):
            raise ValueError(f"avg_num_neighbors must be a finite number > 0 or None, got {avg_num_neighbors!r}")
        hidden = list(radial_hidden)
        if any(not isinstance(h, int) or isinstance(h, bool) or h < 1 for h in hidden):
            raise ValueError(f"radial_hidden must be a sequence of ints >= 1, got {radial_hidden!r}")
        self.lmax, self.cutoff = lmax, float(cutoff)
        self.avg_num_neighbors = None if avg_num_neighbors is None else float(avg_num_neighbors)
        self.allow_zero_length, self.validate = bool(allow_zero_length), bool(validate)
        self.tp_backend = check_tp_backend("tp_backend", tp_backend)

        self.irreps_sh = o3.Irreps.spherical_harmonics(lmax)
        self.sh = o3.SphericalHarmonics(self.irreps_sh, normalize=False, normalization="component")
        wanted = {ir for _, ir in self.irreps_out}
        mid, instructions = [], []
        for i, (mul, ir_in) in enumerate(self.irreps_in):
            for j, (_, ir_sh) in enumerate(self.irreps_sh):
                for ir in ir_in * ir_sh:
                    if ir in wanted:
                        instructions.append((i, j, len(mid), "uvu", True))
                        mid.append((mul, ir))
        mid = o3.Irreps(mid)
        reached = {ir for _, ir in mid}
        missing = [f"{mul}x{ir}" for mul, ir in self.irreps_out if ir not in reached and mul > 0]
        if missing:
            raise ValueError(f"irreps_out: {' + '.join(missing)} cannot be reached from irreps_in {self.irreps_in} "
                             f"x spherical harmonics up to lmax={lmax}")
        # Sorted intermediate irreps (NequIP's layout): the linear layer then sees each
        # irrep type once after simplify().
        mid, perm, _ = mid.sort()
        instructions = [(i, j, perm[k], mode, train) for i, j, k, mode, train in instructions]
        self.irreps_mid = mid
        types_in = {ir for _, ir in self.irreps_in}
        if self_interaction and not any(ir in types_in for _, ir in self.irreps_out):
            raise ValueError(f"self_interaction=True needs an irrep of irreps_out in irreps_in, got "
                             f"{self.irreps_in} -> {self.irreps_out}")
        # e3nn draws initial weights at construction; keep that off the global RNG stream so
        # that a layer built after torch.manual_seed(s) equals one reset after it.
        with torch.random.fork_rng(devices=[]):
            with float64_default() as dtype:  # exact Clebsch-Gordan buffers, kept through casts
                self.tp = o3.TensorProduct(self.irreps_in, self.irreps_sh, mid, instructions,
                                           shared_weights=False, internal_weights=False)
            self._keep_constants(dtype)
            # Parameters stay outside the tensor product (per-edge radial weights), so the
            # state dict is the same with either backend.
            self._cueq = CueqTensorProduct(self.tp) if self.tp_backend == "cueq" else None
            self.linear_out = o3.Linear(mid.simplify(), self.irreps_out)
            self.self_interaction = o3.Linear(self.irreps_in, self.irreps_out) if self_interaction else None

        self.radial_basis = BesselBasis(8, self.cutoff) if radial_basis is None else radial_basis
        self.cutoff_fn = PolynomialCutoff(self.cutoff, p=6) if cutoff_fn is None else cutoff_fn
        num_basis = getattr(self.radial_basis, "num_basis", None)
        if not isinstance(num_basis, int) or num_basis < 1:
            raise ValueError("radial_basis must have an int attribute num_basis >= 1 (its output width)")
        self.act = activation_resolver(act)
        widths = [num_basis] + hidden + [self.tp.weight_numel]
        layers = []
        for k in range(len(widths) - 1):
            # Initialised by reset_parameters only (see above).
            layers.append(torch.nn.utils.skip_init(torch.nn.Linear, widths[k], widths[k + 1]))
            if k < len(widths) - 2:
                layers.append(self.act)
        self.radial = torch.nn.Sequential(*layers)
        self._in_dim = self.irreps_in.dim
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        for layer in self.radial:
            if isinstance(layer, torch.nn.Linear):
                layer.reset_parameters()
        _reset_linear(self.linear_out)
        if self.self_interaction is not None:
            _reset_linear(self.self_interaction)
        for module in (self.radial_basis, self.cutoff_fn):
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def forward(
        self,
        x: Tensor,
        pos: Tensor,
        edge_index: Tensor,
        shift: Optional[Tensor] = None,
        cell: Optional[Tensor] = None,
        batch: Optional[Tensor] = None,
    ) -> Tensor:
        if self.validate:
            self._check_inputs(x, pos, edge_index, shift, cell, batch)
        vec = edge_vec_unchecked(pos, edge_index, shift, cell, batch)
        if self.validate and not self.allow_zero_length:
            check_edge_lengths(vec, edge_index, DEFAULT_EPS)
        length, unit = edge_length_and_unit(vec)
        sh = self.sh(unit)
        weight = self.radial(self.radial_basis(length)) * self.cutoff_fn(length).unsqueeze(-1)
        out = self.propagate(edge_index, x=x, sh=sh, weight=weight, size=(x.size(0), x.size(0)))
        if self.avg_num_neighbors is not None:
            out = out / math.sqrt(self.avg_num_neighbors)
        out = self.linear_out(out)
        if self.self_interaction is not None:
            out = out + self.self_interaction(x)
        return out

    def message(self, x_j: Tensor, sh: Tensor, weight: Tensor) -> Tensor:
        if self._cueq is not None:
            return self._cueq(x_j, sh, weight)
        return self.tp(x_j, sh, weight)

    def _check_inputs(self, x, pos, edge_index, shift, cell, batch) -> None:
        if not isinstance(x, Tensor) or x.dim() != 2 or x.size(-1) != self._in_dim:
            raise ValueError(f"x must have shape [N, {self._in_dim}] (irreps_in {self.irreps_in}), "
                             f"got {list(getattr(x, 'shape', []))}")
        if x.size(0) == 0:
            raise ValueError("x is empty: the graph has no nodes")
        if not isinstance(pos, Tensor) or pos.shape != (x.size(0), 3):
            raise ValueError(f"pos must have shape [{x.size(0)}, 3] (one row per node of x), got "
                             f"{list(getattr(pos, 'shape', []))}")
        check_edge_vec_inputs(pos, edge_index, shift, cell, batch)

    def aggregate(self, inputs: Tensor, index: Tensor, ptr: Optional[Tensor] = None,
                  dim_size: Optional[int] = None) -> Tensor:
        return scatter(inputs, index, dim=0, dim_size=dim_size, reduce="sum")

    def __repr__(self) -> str:
        opts = [f"lmax={self.lmax}", f"cutoff={self.cutoff:g}"]
        if self.avg_num_neighbors is not None:
            opts.append(f"avg_num_neighbors={self.avg_num_neighbors:g}")
        if self.self_interaction is None:
            opts.append("self_interaction=False")
        if self.tp_backend != "e3nn":
            opts.append(f"tp_backend={self.tp_backend!r}")
        return f"{self.__class__.__name__}({self.irreps_in} -> {self.irreps_out}, {', '.join(opts)})"
