"""Public test kit: check that a model is equivariant, and that batching changes nothing.

Modelled on e3nn's ``e3nn.util.test.assert_equivariant`` (random O(3) elements with and
without parity, transforms in float64, dtype-dependent tolerances) and NequIP's unit-test
mixins (node permutations, batch == single graphs). Use it on your own models::

    from equigraph.testing import assert_equivariant
    errors = assert_equivariant(model, data, out_types={"h": "scalar", "pos": "point"})

The types are those of ``docs/conventions.md`` ("Equivariance types"): under
``g = (R, t)`` with ``R`` in O(3),

============== =========================================
type           transformation
============== =========================================
"scalar"       unchanged
"pseudoscalar" ``det(R) * s``
"vector"       ``v @ R.T`` (last dimension of size 3, Cartesian x, y, z)
"pseudovector" ``det(R) * v @ R.T``
"point"        ``p @ R.T + t``
"cell"         ``cell @ R.T`` (lattice vectors as rows)
"tensor"       ``R @ T @ R.T`` (stress, on the last two dimensions)
Irreps         ``x @ D(R).T`` with ``D = Irreps.D_from_matrix(R)`` on the last dimension
               (e3nn >= 0.6 orders ``1o`` components x, y, z, so ``"1o"`` == ``"vector"``)
============== =========================================

Default tolerances, per output dtype (an output passes when its largest absolute error is
at most ``atol + rtol * max|expected|``):

=========================== ======== ========
dtype                       atol     rtol
=========================== ======== ========
float64                     1e-9     1e-9
float32                     1e-4     1e-4
float16 / bfloat16          1e-2     1e-2
=========================== ======== ========
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from e3nn import o3

from equigraph.data import keys as K

__all__ = [
    "assert_equivariant",
    "assert_batch_consistent",
    "random_rotation",
    "random_o3",
    "transform",
    "lattice_translate",
    "wigner_D",
    "TYPES",
    "GROUPS",
    "default_tolerance",
    "EquivariantModelTests",
]

from equigraph.symmetry import (  # noqa: F401  (re-exported: the public test kit names them)
    GROUPS,
    TYPES,
    TypeSpec,
    lattice_translate,
    parse_type,
    random_o3,
    random_rotation,
    transform,
    wigner_D,
)
from equigraph.symmetry import as_generator as _as_generator
from equigraph.symmetry import parse_type as _parse_type

_TOLERANCE = {
    torch.float64: (1e-9, 1e-9),
    torch.float32: (1e-4, 1e-4),
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (1e-2, 1e-2),
}

# Types assumed for inputs present in ``data`` when ``in_types`` is not given.
_DEFAULT_IN_TYPES = {K.POS: "point", K.VEL: "vector", K.CELL: "cell", K.FORCES: "vector"}
# Types assumed for dict outputs that ``out_types`` does not name (design.md's model outputs).
_DEFAULT_OUT_TYPES = {K.POS: "point", K.VEL: "vector", K.FORCES: "vector", K.VEC: "vector", K.CELL: "cell",
                      K.STRESS: "tensor"}


def default_tolerance(dtype: torch.dtype) -> Tuple[float, float]:
    """``(atol, rtol)`` used for outputs of ``dtype`` (see the module docstring).

    Example:
        >>> default_tolerance(torch.float64)
        (1e-09, 1e-09)
    """
    return _TOLERANCE.get(dtype, (1e-4, 1e-4))


# ---------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------
def _flatten(output: Any) -> Tuple[str, Dict[str, Tensor]]:
    """Outputs as ``{name: tensor}``; kind is "tensor", "sequence" or "mapping"."""
    if isinstance(output, Tensor):
        return "tensor", {"output": output}
    if isinstance(output, Mapping):
        kind, items = "mapping", output.items()
    elif isinstance(output, (tuple, list)):
        kind, items = "sequence", enumerate(output)
    else:
        raise ValueError(f"module output must be a Tensor, a tuple/list or a dict of Tensors, got {type(output).__name__}")
    flat = {}
    for k, v in items:
        if v is None:
            continue
        if not isinstance(v, Tensor):
            raise ValueError(f"output {k!r} is a {type(v).__name__}, not a Tensor")
        flat[str(k)] = v
    return kind, flat


def _out_types(kind: str, names: Iterable[str], out_types: Any) -> Dict[str, TypeSpec]:
    names = list(names)
    if kind == "tensor":
        spec = "scalar" if out_types is None else out_types
        if isinstance(spec, Mapping):
            spec = spec.get("output", "scalar")
        return {"output": _parse_type(spec, "output")}
    if kind == "sequence":
        if out_types is None:
            return {n: "scalar" for n in names}
        if isinstance(out_types, (str, o3.Irreps)):
            raise ValueError("`out_types` must be a sequence (or dict by index) for a tuple output")
        if isinstance(out_types, Mapping):
            table = {str(k): v for k, v in out_types.items()}
        else:
            table = {str(i): v for i, v in enumerate(out_types)}
        return {n: _parse_type(table.get(n, "scalar"), n) for n in names}
    if out_types is not None and not isinstance(out_types, Mapping):
        raise ValueError("`out_types` must be a dict {output key: type} for a dict output")
    table = dict(out_types or {})
    unknown = set(table) - set(names)
    if unknown:
        raise ValueError(f"`out_types` names outputs the module did not return: {sorted(unknown)}")
    return {n: _parse_type(table.get(n, _DEFAULT_OUT_TYPES.get(n, "scalar")), n) for n in names}


# ---------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------
def _check_data(data: Any, name: str = "data") -> None:
    from torch_geometric.data.data import BaseData

    if not isinstance(data, BaseData):
        raise ValueError(f"`{name}` must be a torch_geometric Data or Batch, got {type(data).__name__}")


def _num_nodes(data) -> int:
    n = data.num_nodes
    if n is None:
        raise ValueError("`data` has no nodes: set `pos` (or `num_nodes`)")
    return int(n)


def _in_types(data, in_types: Optional[Mapping[str, Any]]) -> Dict[str, TypeSpec]:
    if in_types is None:
        return {k: v for k, v in _DEFAULT_IN_TYPES.items() if isinstance(getattr(data, k, None), Tensor)}
    if not isinstance(in_types, Mapping):
        raise ValueError("`in_types` must be a dict {data key: type}")
    out = {}
    for k, v in in_types.items():
        if not isinstance(getattr(data, k, None), Tensor):
            raise ValueError(f"`in_types` names {k!r}, which is not a tensor attribute of `data`")
        out[k] = _parse_type(v, k)
    return out


def _apply(data, in_types: Mapping[str, TypeSpec], R: Tensor, t: Optional[Tensor]):
    new = data.clone()
    for k, type_ in in_types.items():
        old = data[k]
        new[k] = transform(old, type_, R, t, name=k).to(old.dtype)
    return new


def _is_edge_key(key: str) -> bool:
    return key in K.EDGE_KEYS or "edge" in key


def _permute(data, gen: torch.Generator) -> Tuple[Any, Tensor, Optional[Tensor]]:
    """Shuffle nodes within each graph (and the order of edges); returns the new data, the
    node permutation ``perm`` (new node ``k`` is old node ``perm[k]``) and the edge one."""
    n = _num_nodes(data)
    batch = getattr(data, K.BATCH, None)
    if batch is None:
        batch = torch.zeros(n, dtype=torch.long)
    batch_cpu = batch.cpu()
    shuffled = torch.randperm(n, generator=gen)
    by_graph = shuffled[torch.argsort(batch_cpu[shuffled], stable=True)]
    slots = torch.argsort(batch_cpu, stable=True)
    perm = torch.empty(n, dtype=torch.long)
    perm[slots] = by_graph
    inv = torch.empty(n, dtype=torch.long)
    inv[perm] = torch.arange(n)

    edge_index = getattr(data, K.EDGE_INDEX, None)
    num_edges = edge_index.size(1) if isinstance(edge_index, Tensor) else None
    eperm = torch.randperm(num_edges, generator=gen) if num_edges is not None else None

    new = data.clone()
    for key, value in data.items():
        if not isinstance(value, Tensor) or value.dim() == 0 or key == "ptr":
            continue
        rows = value.size(0)
        # When there are as many nodes as edges, only the name can tell them apart.
        is_edge = rows == num_edges and (rows != n or _is_edge_key(key))
        if key == K.EDGE_INDEX:
            new[key] = inv.to(value.device)[value][:, eperm.to(value.device)]
        elif is_edge:
            new[key] = value[eperm.to(value.device)]
        elif key not in K.GRAPH_KEYS and rows == n:
            new[key] = value[perm.to(value.device)]
    return new, perm, eperm


# ---------------------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------------------
def _error(actual: Tensor, expected: Tensor) -> Tuple[float, float]:
    """Largest absolute error and largest absolute expected value (float64)."""
    a = actual.detach().to(torch.float64)
    if a.shape != expected.shape:
        return math.inf, 0.0
    if a.numel() == 0:
        return 0.0, 0.0
    err = (a - expected).abs().max()
    return float(err) if bool(torch.isfinite(err)) else math.inf, float(expected.abs().max())


def _tolerance(dtype: torch.dtype, atol: Optional[float], rtol: Optional[float]) -> Tuple[float, float]:
    d_atol, d_rtol = default_tolerance(dtype)
    return (d_atol if atol is None else atol), (d_rtol if rtol is None else rtol)


def assert_equivariant(
    module: Callable,
    data,
    group: str = "E3",
    in_types: Optional[Mapping[str, Any]] = None,
    out_types: Any = None,
    *,
    permutation: bool = True,
    atol: Optional[float] = None,
    rtol: Optional[float] = None,
    num_trials: int = 2,
    generator: Union[None, int, torch.Generator] = None,
    node_outputs: Optional[Iterable[str]] = None,
    edge_outputs: Optional[Iterable[str]] = None,
) -> Dict[str, Dict[str, float]]:
    r"""Assert that ``module(data)`` is equivariant under ``group`` and node permutations.

    For each check (``"rotation"``, ``"reflection"``, ``"translation"`` as ``group``
    implies, and ``"permutation"``) and each of ``num_trials`` random elements ``g``, the
    inputs named in ``in_types`` are transformed (in float64, then cast back), the module is
    called on the transformed copy, and its outputs are compared with the transformed
    reference outputs:

    .. math::
        \max |f(g \cdot x) - g \cdot f(x)| \le \mathrm{atol} + \mathrm{rtol} \max |g \cdot f(x)|

    The permutation check shuffles the nodes within each graph (every node-level input,
    ``edge_index`` renumbered) and the order of the edges (every edge-level input, e.g.
    ``shift`` stays attached to its edge); node-level outputs (first dimension = number of
    nodes) and edge-level outputs (first dimension = number of edges) must follow. Inputs
    are classified the same way (graph keys such as ``cell`` never move); index tensors
    other than ``edge_index`` are not renumbered, so pass ``permutation=False`` for data
    that carries them.

    Put the module in ``eval()`` mode first if it has dropout.

    Args:
        module (callable): called as ``module(data)``; returns a Tensor, a tuple/list or a
            dict of Tensors.
        data (torch_geometric.data.Data or Batch): the input; not modified.
        group (str, optional): ``"E3"``, ``"SE3"``, ``"O3"`` or ``"SO3"``; E3 and O3 include
            reflections (det -1), E3 and SE3 translations. (default: :obj:`"E3"`)
        in_types (dict, optional): ``{data key: type}`` of the inputs to transform; replaces
            the default ``{pos: "point"}`` plus ``vel: "vector"``, ``cell: "cell"``,
            ``forces: "vector"`` when present. (default: :obj:`None`)
        out_types (optional): a type for a Tensor output, a sequence (or dict by index) for a
            tuple, ``{key: type}`` for a dict. (default: :obj:`None`: the types the module
            declares in its ``outputs`` (the model contract,
            :class:`equigraph.models.Output`), which also give each output's level; for a
            module that declares none, ``pos`` point, ``vel``, ``forces``, ``vec`` vector,
            ``cell`` cell, ``stress`` tensor, anything else scalar)
        permutation (bool, optional): also check node permutations. (default: :obj:`True`)
        atol (float, optional): absolute tolerance. (default: by output dtype, see module doc)
        rtol (float, optional): relative tolerance. (default: by output dtype, see module doc)
        num_trials (int, optional): random elements per check. (default: :obj:`2`)
        generator (int or torch.Generator, optional): seed or CPU generator for the random
            elements. (default: seed 0)
        node_outputs (iterable of str, optional): output names that are node-level; every
            other output (not in ``edge_outputs``) is then graph-level. (default: :obj:`None`,
            decided by the first dimension; when there are as many nodes as edges, names
            containing ``"edge"`` are edge-level, the rest node-level)
        edge_outputs (iterable of str, optional): output names that are edge-level.
            (default: :obj:`None`)

    Returns:
        dict: ``{check: {output name: largest absolute error}}``. Tensor outputs are named
        ``"output"``, tuple outputs ``"0"``, ``"1"``, ...

    Raises:
        AssertionError: naming each failing output, the check and its error.
        ValueError: for a bad argument (unknown group or type, missing key, wrong shape).

    Example:
        >>> from torch_geometric.data import Data
        >>> def centred(data):  # equivariant: positions relative to their centroid
        ...     return {"pos": data.pos - data.pos.mean(dim=0), "r": (data.pos - data.pos.mean(0)).norm(dim=-1)}
        >>> data = Data(pos=torch.randn(5, 3, dtype=torch.float64))
        >>> errors = assert_equivariant(centred, data, out_types={"pos": "vector"})
        >>> sorted(errors)
        ['permutation', 'reflection', 'rotation', 'translation']
        >>> assert_equivariant(lambda d: d.pos[:, :1], data)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        AssertionError: ...'output' (scalar) fails the rotation check...
    """
    _check_data(data)
    if group not in GROUPS:
        raise ValueError(f"`group` must be one of {sorted(GROUPS)}, got {group!r}")
    if not isinstance(num_trials, int) or num_trials < 1:
        raise ValueError(f"`num_trials` must be a positive int, got {num_trials!r}")
    for name, value in (("atol", atol), ("rtol", rtol)):
        if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"`{name}` must be a finite number >= 0, got {value!r}")
    n = _num_nodes(data)
    if n == 0:
        raise ValueError("`data` has no nodes")
    pos = getattr(data, K.POS, None)
    if isinstance(pos, Tensor) and pos.is_floating_point() and not bool(torch.isfinite(pos).all()):
        raise ValueError("`data.pos` contains NaN or inf coordinates")
    gen = _as_generator(generator)
    in_types = _in_types(data, in_types)

    kind, ref = _flatten(module(data.clone()))
    if not ref:
        raise ValueError("the module returned no tensors to check")
    declared = getattr(module, "outputs", None)
    if kind == "mapping" and isinstance(declared, Mapping) and all(hasattr(o, "level") for o in declared.values()):
        undeclared = sorted(set(ref) - set(declared))
        if undeclared:
            raise AssertionError(f"the module returned outputs it does not declare: {undeclared}")
        if out_types is None:
            out_types = {k: declared[k].type for k in ref}
        if node_outputs is None and edge_outputs is None:
            node_outputs = [k for k in ref if declared[k].level == "node"]
            edge_outputs = [k for k in ref if declared[k].level == "edge"]
    types = _out_types(kind, ref, out_types)
    for name, value in ref.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise AssertionError(f"output {name!r} contains NaN or inf on the untransformed input")

    edge_index = getattr(data, K.EDGE_INDEX, None)
    num_edges = edge_index.size(1) if isinstance(edge_index, Tensor) else None
    node_set = set(node_outputs) if node_outputs is not None else None
    edge_set = set(edge_outputs or ())

    def level(name: str, value: Tensor) -> str:
        if name in edge_set:
            return "edge"
        if node_set is not None:
            return "node" if name in node_set else "graph"
        rows = value.size(0) if value.dim() > 0 else None
        if rows == n and rows == num_edges:
            return "edge" if _is_edge_key(name) else "node"
        if rows == n:
            return "node"
        if rows is not None and rows == num_edges:
            return "edge"
        return "graph"

    levels = {name: level(name, v) for name, v in ref.items()}
    # Translation scale follows the size of the input, so it is neither lost in rounding
    # nor negligible next to the coordinates.
    scale = 1.0
    if isinstance(pos, Tensor) and pos.numel():
        scale = max(1.0, float(pos.detach().to(torch.float64).abs().max()))

    checks = list(GROUPS[group]) + (["permutation"] if permutation else [])
    errors: Dict[str, Dict[str, float]] = {c: {k: 0.0 for k in ref} for c in checks}
    failures: List[str] = []
    eye = torch.eye(3, dtype=torch.float64)
    for check in checks:
        for trial in range(num_trials):
            R, t, perm, eperm = eye, None, None, None
            if check == "rotation":
                R = random_rotation(generator=gen)
            elif check == "reflection":
                R = random_o3(parity=True, generator=gen)
            elif check == "translation":
                t = torch.randn(3, generator=gen, dtype=torch.float64) * scale
            if check == "permutation":
                moved, perm, eperm = _permute(data, gen)
            else:
                moved = _apply(data, in_types, R, t)
            _, out = _flatten(module(moved))
            for name, value in ref.items():
                if name not in out:
                    failures.append(f"output {name!r} is missing after the {check} (trial {trial})")
                    continue
                if check == "permutation":
                    expected = value.detach().to(torch.float64)
                    if levels[name] == "node":
                        expected = expected[perm.to(expected.device)]
                    elif levels[name] == "edge":
                        expected = expected[eperm.to(expected.device)]
                else:
                    expected = transform(value, types[name], R, t, name=name)
                err, size = _error(out[name], expected)
                errors[check][name] = max(errors[check][name], err)
                a, r = _tolerance(value.dtype, atol, rtol)
                allowed = a + r * size
                if not err <= allowed:
                    if out[name].shape != expected.shape:
                        what = f"shape {tuple(out[name].shape)} instead of {tuple(expected.shape)}, so error inf"
                    else:
                        what = f"max abs error {err:.3g}"
                    hint = ""
                    if check == "permutation" and num_edges == n and name not in edge_set and node_set is None:
                        hint = (
                            f"; as many nodes as edges ({n}): it was taken as {levels[name]}-level, "
                            "pass node_outputs= or edge_outputs= if that is wrong"
                        )
                    failures.append(
                        f"output {name!r} ({types[name]}) fails the {check} check (group {group}, trial {trial}): "
                        f"{what} > tolerance {allowed:.3g} (atol {a:g}, rtol {r:g}, {value.dtype}){hint}"
                    )
    if failures:
        raise AssertionError("not equivariant:\n  " + "\n  ".join(failures))
    return errors


def assert_batch_consistent(
    module: Callable,
    data_list: Sequence,
    *,
    atol: Optional[float] = None,
    rtol: Optional[float] = None,
) -> Dict[str, float]:
    r"""Assert that ``module`` gives the same outputs on a batch as on each graph alone.

    ``data_list`` is batched with :meth:`torch_geometric.data.Batch.from_data_list`; each
    output of the batched call is split by graph: node-level rows (the single-graph output
    has one row per node), graph-level rows (one row per graph) or edge-level rows (one per
    edge), decided from the single-graph outputs.

    Args:
        module (callable): called as ``module(data)``.
        data_list (sequence of Data): at least two graphs, ideally of different sizes.
        atol (float, optional): absolute tolerance. (default: by output dtype)
        rtol (float, optional): relative tolerance. (default: by output dtype)

    Returns:
        dict: ``{output name: largest absolute error}``.

    Example:
        >>> from torch_geometric.data import Data
        >>> from torch_geometric.utils import scatter
        >>> def radius(data):  # per-graph radius of gyration, per-node distance to centroid
        ...     b = data.batch if data.batch is not None else torch.zeros(data.num_nodes, dtype=torch.long)
        ...     c = scatter(data.pos, b, dim=0, reduce="mean")
        ...     d = (data.pos - c[b]).norm(dim=-1)
        ...     return {"d": d, "rg": scatter(d * d, b, dim=0, reduce="mean").sqrt()}
        >>> graphs = [Data(pos=torch.randn(n, 3, dtype=torch.float64)) for n in (3, 5)]
        >>> sorted(assert_batch_consistent(radius, graphs))
        ['d', 'rg']
    """
    from torch_geometric.data import Batch

    if not isinstance(data_list, Sequence) or len(data_list) == 0:
        raise ValueError("`data_list` must be a non-empty sequence of Data")
    for i, d in enumerate(data_list):
        _check_data(d, f"data_list[{i}]")
    batch = Batch.from_data_list(list(data_list))
    _, batched = _flatten(module(batch))
    singles = [_flatten(module(d.clone()))[1] for d in data_list]
    nodes = [_num_nodes(d) for d in data_list]
    edges = [d[K.EDGE_INDEX].size(1) if isinstance(getattr(d, K.EDGE_INDEX, None), Tensor) else None for d in data_list]

    errors: Dict[str, float] = {}
    failures: List[str] = []
    for name, value in batched.items():
        if any(name not in s for s in singles):
            failures.append(f"output {name!r} is returned for the batch but not for every single graph")
            continue
        rows = [s[name].size(0) if s[name].dim() > 0 else None for s in singles]
        if rows == nodes and value.size(0) == sum(nodes):
            counts = nodes
        elif all(r == 1 for r in rows) and value.size(0) == len(data_list):
            counts = rows
        elif None not in edges and rows == edges and value.size(0) == sum(edges):
            counts = edges
        else:
            raise ValueError(
                f"cannot tell which graph each row of output {name!r} belongs to: batched shape "
                f"{tuple(value.shape)}, single-graph first dimensions {rows}"
            )
        parts = torch.split(value, counts, dim=0)
        err_max = 0.0
        for i, (part, single) in enumerate(zip(parts, (s[name] for s in singles))):
            err, size = _error(part, single.detach().to(torch.float64))
            err_max = max(err_max, err)
            a, r = _tolerance(value.dtype, atol, rtol)
            if not err <= a + r * size:
                failures.append(
                    f"output {name!r} of graph {i} differs between the batch and the graph alone: "
                    f"max abs error {err:.3g} > tolerance {a + r * size:.3g}"
                )
        errors[name] = err_max
    if failures:
        raise AssertionError("batched outputs differ from single-graph outputs:\n  " + "\n  ".join(failures))
    return errors


class EquivariantModelTests:
    """NequIP-style mixin: inherit it in a pytest test class that provides the fixtures
    ``model`` (a module, in the dtype to test) and ``data_list`` (at least two graphs of
    different sizes, in the same dtype), and the class gains the standard checks.

    Class attributes configure the checks: ``group`` (default ``"E3"``), ``in_types``,
    ``out_types``, ``atol``, ``rtol``.

    Example::

        class TestMyModel(EquivariantModelTests):
            out_types = {"dipole": "vector"}

            @pytest.fixture
            def model(self):
                return MyModel().double().eval()

            @pytest.fixture
            def data_list(self):
                return [Data(z=..., pos=...), Data(z=..., pos=...)]
    """

    group: str = "E3"
    in_types: Optional[Mapping[str, Any]] = None
    out_types: Any = None
    atol: Optional[float] = None
    rtol: Optional[float] = None

    def _kwargs(self) -> Dict[str, Any]:
        return dict(in_types=self.in_types, out_types=self.out_types, atol=self.atol, rtol=self.rtol)

    def test_equivariant_single_graph(self, model, data_list):
        assert_equivariant(model, data_list[0], self.group, **self._kwargs())

    def test_equivariant_batch(self, model, data_list):
        from torch_geometric.data import Batch

        assert_equivariant(model, Batch.from_data_list(list(data_list)), self.group, **self._kwargs())

    def test_batch_consistent(self, model, data_list):
        assert_batch_consistent(model, data_list, atol=self.atol, rtol=self.rtol)
