"""Public test kit: check that a model is equivariant, and that batching changes nothing.

Modelled on e3nn's ``e3nn.util.test.assert_equivariant`` (random O(3) elements with and
without parity, transforms in float64, dtype-dependent tolerances) and NequIP's unit-test
mixins (node permutations, batch == single graphs, and for energy models: forces against
finite differences, stress against strain derivatives, lattice translations, smoothness at
the cutoff, extensivity: :class:`EnergyModelTests`). Use it on your own models::

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
    "assert_forces_match_energy",
    "assert_stress_matches_energy",
    "assert_lattice_invariant",
    "assert_smooth_at_cutoff",
    "assert_extensive",
    "EnergyModelTests",
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


# ---------------------------------------------------------------------------------------
# Energy models: forces, stress, periodicity, cutoff, extensivity
# ---------------------------------------------------------------------------------------
_AXES = "xyz"


def _energy_call(model: Callable, data, keys: Sequence[str]) -> Dict[str, Tensor]:
    out = model(data)
    if not isinstance(out, Mapping):
        raise ValueError(f"the model must return a dict with {list(keys)}, got {type(out).__name__}")
    missing = [k for k in keys if not isinstance(out.get(k), Tensor)]
    if missing:
        raise ValueError(f"the model returned no {missing}; it returned {sorted(out)}")
    return dict(out)


def _energy_of(out: Mapping[str, Tensor], key: str) -> Tensor:
    """Per-graph energies ``[G]`` in float64 (``[G, 1]`` accepted)."""
    energy = out[key]
    if energy.dim() == 2 and energy.size(-1) == 1:
        energy = energy.squeeze(-1)
    if energy.dim() == 0:
        energy = energy.reshape(1)
    if energy.dim() != 1:
        raise ValueError(f"output {key!r} must be one energy per graph, [G] or [G, 1], "
                         f"got shape {tuple(out[key].shape)}")
    return energy.detach().to(torch.float64)


def _float64_positions(data, what: str) -> Tensor:
    _check_data(data)
    pos = getattr(data, K.POS, None)
    if not isinstance(pos, Tensor) or pos.dim() != 2 or pos.size(-1) != 3:
        raise ValueError(f"{what}: `data.pos` must be an [N, 3] tensor")
    if pos.dtype != torch.float64:
        raise ValueError(f"{what}: finite differences need float64 positions (and a float64 model), got {pos.dtype}")
    if not bool(torch.isfinite(pos).all()):
        raise ValueError(f"{what}: `data.pos` contains NaN or inf coordinates")
    return pos.detach()


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"`{name}` must be a finite number > 0, got {value!r}")
    return float(value)


def _non_negative(name: str, value: Any) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"`{name}` must be a finite number >= 0, got {value!r}")
    return float(value)


def _batch_vector(data, n: int, device) -> Tensor:
    batch = getattr(data, K.BATCH, None)
    return batch if isinstance(batch, Tensor) else torch.zeros(n, dtype=torch.long, device=device)


def _cells(data, what: str) -> Tensor:
    cell = getattr(data, K.CELL, None)
    if not isinstance(cell, Tensor) or cell.numel() % 9 or cell.numel() == 0:
        raise ValueError(f"{what}: `data.cell` must be a [G, 3, 3] tensor of lattice vectors")
    return cell.detach().reshape(-1, 3, 3)


def _periodic_directions(data, what: str) -> Tuple[Tensor, Tensor]:
    """``(cell [G, 3, 3], pbc [G, 3] bool on the CPU)`` of periodic data, else ``ValueError``."""
    cell = _cells(data, what)
    pbc = getattr(data, K.PBC, None)
    if pbc is None:
        raise ValueError(f"{what}: `data.pbc` is missing; periodic data needs `cell` and `pbc`")
    pbc = torch.as_tensor(pbc).to(torch.bool).reshape(-1, 3).cpu()
    if pbc.size(0) != cell.size(0):
        raise ValueError(f"{what}: `data.pbc` has {pbc.size(0)} rows for {cell.size(0)} cells")
    if not bool(pbc.any()):
        raise ValueError(f"{what}: `data.pbc` has no periodic direction")
    return cell, pbc


def _is_periodic(data) -> bool:
    pbc = getattr(data, K.PBC, None)
    return getattr(data, K.CELL, None) is not None and pbc is not None and bool(torch.as_tensor(pbc).any())


def _require_open(data, what: str) -> None:
    if _is_periodic(data):
        raise ValueError(f"{what}: needs a non-periodic structure (`data.pbc` has a periodic direction)")
    if getattr(data, K.EDGE_INDEX, None) is not None:
        raise ValueError(f"{what}: `data.edge_index` is set; the model must build its own graph (from its cutoff) "
                         "for the check to move atoms across it")


def _output_kinds(model: Callable, out: Mapping[str, Tensor], n: int) -> Dict[str, Tuple[TypeSpec, str]]:
    """``{name: (type, level)}`` of the tensor outputs: declared ones when the model
    declares them, else the kit's defaults (level from the first dimension)."""
    declared = getattr(model, "outputs", None)
    if not (isinstance(declared, Mapping) and all(hasattr(o, "level") for o in declared.values())):
        declared = {}
    kinds = {}
    for name, value in out.items():
        if not isinstance(value, Tensor):
            continue
        if name in declared:
            kinds[name] = (declared[name].type, declared[name].level)
        else:
            level = "node" if value.dim() > 0 and value.size(0) == n else "graph"
            kinds[name] = (_parse_type(_DEFAULT_OUT_TYPES.get(name, "scalar"), name), level)
    return kinds


def _fmt_vec(v: Tensor) -> str:
    return "[" + ", ".join(f"{float(x):.6g}" for x in v.reshape(-1)) + "]"


def assert_forces_match_energy(
    model: Callable,
    data,
    *,
    atoms: Optional[Iterable[int]] = None,
    step: float = 1e-5,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    energy_key: str = K.ENERGY,
    forces_key: str = K.FORCES,
) -> float:
    r"""Assert that the forces are minus the central finite-difference gradient of the energy.

    Each coordinate :math:`x_{a,d}` of each atom ``a`` in ``atoms`` is moved by
    :math:`\pm h` and

    .. math::
        F^{\mathrm{FD}}_{a,d} = -\frac{E(x_{a,d} + h) - E(x_{a,d} - h)}{2h}

    (with :math:`E` summed over the graphs of a batch) is compared with the model's
    ``forces``: an atom passes when
    :math:`\max |F - F^{\mathrm{FD}}| \le \mathrm{atol} + \mathrm{rtol} \max |F|`.
    Two model calls per coordinate: keep ``atoms`` to a few (the default checks every one).

    Args:
        model (callable): returns a dict with ``energy_key`` (``[G]`` or ``[G, 1]``) and
            ``forces_key`` (``[N, 3]``); float64, in ``eval()`` mode.
        data (Data or Batch): float64 positions; periodic data (``cell``, ``pbc``) is fine.
        atoms (iterable of int, optional): atoms to move. (default: all)
        step (float, optional): :math:`h` in Å. (default: :obj:`1e-5`)
        atol (float, optional): absolute tolerance, eV/Å. (default: :obj:`1e-6`)
        rtol (float, optional): tolerance relative to the largest force. (default: :obj:`1e-5`)
        energy_key (str, optional): (default: :obj:`"energy"`)
        forces_key (str, optional): (default: :obj:`"forces"`)

    Returns:
        float: the largest absolute difference, eV/Å.

    Raises:
        AssertionError: naming the worst atom and component, both values and the tolerance.
        ValueError: positions not float64, a bad atom index or argument.

    Example:
        >>> from torch_geometric.data import Data
        >>> def harmonic(data):  # E = sum |x|^2 / 2, F = -x
        ...     return {"energy": 0.5 * data.pos.square().sum().reshape(1), "forces": -data.pos}
        >>> data = Data(pos=torch.randn(3, 3, dtype=torch.float64))
        >>> assert_forces_match_energy(harmonic, data) < 1e-8
        True
    """
    what = "assert_forces_match_energy"
    pos = _float64_positions(data, what)
    step = _positive("step", step)
    atol, rtol = _non_negative("atol", atol), _non_negative("rtol", rtol)
    n = pos.size(0)
    atoms = list(range(n)) if atoms is None else [int(a) for a in atoms]
    if not atoms or any(not -n <= a < n for a in atoms):
        raise ValueError(f"`atoms` must be a non-empty list of indices in [-{n}, {n}), got {atoms}")
    atoms = [a % n for a in atoms]
    forces = _energy_call(model, data.clone(), (energy_key, forces_key))[forces_key]
    if tuple(forces.shape) != (n, 3):
        raise AssertionError(f"output {forces_key!r} has shape {tuple(forces.shape)}, expected ({n}, 3)")
    forces = forces.detach().to(torch.float64)[atoms]
    fd = torch.zeros_like(forces)
    for row, a in enumerate(atoms):
        for d in range(3):
            energies = []
            for sign in (1.0, -1.0):
                moved = data.clone()
                p = pos.clone()
                p[a, d] += sign * step
                moved[K.POS] = p
                energies.append(_energy_of(_energy_call(model, moved, (energy_key,)), energy_key).sum())
            fd[row, d] = -(energies[0] - energies[1]) / (2 * step)
    err = (forces - fd).abs()
    allowed = atol + rtol * float(forces.abs().max())
    worst = float(err.max())
    if not worst <= allowed:
        row, d = divmod(int(err.argmax()), 3)
        bad = int((err > allowed).sum())
        raise AssertionError(
            f"{forces_key!r} is not minus the gradient of {energy_key!r}: atom {atoms[row]} {_AXES[d]}: "
            f"model {float(forces[row, d]):.8g} vs finite difference {float(fd[row, d]):.8g} "
            f"(step {step:g} Å), error {worst:.3g} > tolerance {allowed:.3g} (atol {atol:g}, rtol {rtol:g}); "
            f"{bad} of {3 * len(atoms)} coordinates fail"
        )
    return worst


def assert_stress_matches_energy(
    model: Callable,
    data,
    *,
    step: float = 1e-5,
    atol: float = 1e-7,
    rtol: float = 1e-5,
    energy_key: str = K.ENERGY,
    stress_key: str = K.STRESS,
) -> float:
    r"""Assert that the stress is the finite-difference strain derivative of the energy.

    For each of the six components of a symmetric strain
    :math:`\boldsymbol{\varepsilon} = \pm h (\mathbf{e}_a \mathbf{e}_b^\top +
    \mathbf{e}_b \mathbf{e}_a^\top) / 2`, applied to positions and cell together
    (:math:`\mathbf{x} \mapsto \mathbf{x}(1 + \boldsymbol{\varepsilon})`,
    :math:`\mathbf{L} \mapsto \mathbf{L}(1 + \boldsymbol{\varepsilon})`, every graph of a
    batch at once),

    .. math::
        \sigma^{\mathrm{FD}}_{ab} = \frac{1}{V} \frac{E(+h) - E(-h)}{2h}

    is compared with the model's ``stress`` (ASE's sign convention, eV/Å³); the model's
    stress must also be symmetric.

    Args:
        model (callable): returns a dict with ``energy_key`` and ``stress_key``
            (``[G, 3, 3]``); float64, in ``eval()`` mode.
        data (Data or Batch): float64 positions and ``cell`` (non-zero volume).
        step (float, optional): :math:`h`, dimensionless. (default: :obj:`1e-5`)
        atol (float, optional): absolute tolerance, eV/Å³. (default: :obj:`1e-7`)
        rtol (float, optional): tolerance relative to the largest component.
            (default: :obj:`1e-5`)
        energy_key (str, optional): (default: :obj:`"energy"`)
        stress_key (str, optional): (default: :obj:`"stress"`)

    Returns:
        float: the largest absolute difference, eV/Å³.

    Raises:
        AssertionError: naming the worst graph and component, both values and the tolerance.
        ValueError: positions not float64, no cell or a cell of zero volume.
    """
    what = "assert_stress_matches_energy"
    pos = _float64_positions(data, what)
    cell = _cells(data, what).to(torch.float64)
    step = _positive("step", step)
    atol, rtol = _non_negative("atol", atol), _non_negative("rtol", rtol)
    volume = torch.linalg.det(cell).abs()
    if not bool((volume > 0).all()):
        raise ValueError(f"{what}: `data.cell` of graph {int((volume <= 0).nonzero()[0])} has zero volume")
    g = cell.size(0)
    stress = _energy_call(model, data.clone(), (energy_key, stress_key))[stress_key]
    if tuple(stress.shape) != (g, 3, 3):
        raise AssertionError(f"output {stress_key!r} has shape {tuple(stress.shape)}, expected ({g}, 3, 3)")
    stress = stress.detach().to(torch.float64)
    cell_shape, cell_dtype = data[K.CELL].shape, data[K.CELL].dtype
    fd = torch.zeros_like(stress)
    for a in range(3):
        for b in range(a, 3):
            unit = torch.zeros(3, 3, dtype=torch.float64, device=pos.device)
            unit[a, b] += 0.5
            unit[b, a] += 0.5
            energies = []
            for sign in (1.0, -1.0):
                strain = sign * step * unit
                moved = data.clone()
                moved[K.POS] = pos + pos @ strain
                moved[K.CELL] = (cell + cell @ strain).reshape(cell_shape).to(cell_dtype)
                energies.append(_energy_of(_energy_call(model, moved, (energy_key,)), energy_key))
            value = (energies[0] - energies[1]) / (2 * step) / volume
            fd[:, a, b] = value
            fd[:, b, a] = value
    err = (stress - fd).abs()
    allowed = atol + rtol * float(stress.abs().max())
    worst = float(err.max())
    if not worst <= allowed:
        graph, rest = divmod(int(err.argmax()), 9)
        a, b = divmod(rest, 3)
        raise AssertionError(
            f"{stress_key!r} is not (1/V) dE/dstrain of {energy_key!r}: graph {graph}, component "
            f"{_AXES[a]}{_AXES[b]}: model {float(stress[graph, a, b]):.8g} vs finite difference "
            f"{float(fd[graph, a, b]):.8g} eV/Å^3 (strain step {step:g}), error {worst:.3g} > tolerance "
            f"{allowed:.3g} (atol {atol:g}, rtol {rtol:g})"
        )
    return worst


def assert_lattice_invariant(
    model: Callable,
    data,
    *,
    atom: int = 0,
    n: Optional[Sequence[int]] = None,
    atol: Optional[float] = None,
    rtol: Optional[float] = None,
    generator: Union[None, int, torch.Generator] = None,
) -> Dict[str, float]:
    r"""Assert that moving atoms by lattice vectors changes no output of a periodic model.

    Two moves, each compared with the unmoved reference: atom ``atom`` by ``n @ cell``
    (:func:`lattice_translate`), then every atom by its own random lattice vector (integer
    offsets in :math:`[-2, 2]` along the periodic directions). Graph- and node-level
    outputs must not change (energy, forces, stress, per-atom energies), except
    ``"point"`` outputs, which move with their atom; edge-level outputs are not compared
    (a graph builder may order the edges by their shifts). A model whose edge vectors
    ignore the periodic shifts fails.

    Args:
        model (callable): returns a dict of Tensors; in ``eval()`` mode.
        data (Data or Batch): periodic: ``cell`` ``[G, 3, 3]`` and ``pbc`` ``[G, 3]``.
        atom (int, optional): the atom of the first move. (default: :obj:`0`)
        n (sequence of 3 ints, optional): its lattice offsets. (default: ``[1, -1, 2]``
            with the non-periodic directions set to 0)
        atol (float, optional): absolute tolerance. (default: by output dtype, see module doc)
        rtol (float, optional): relative tolerance. (default: by output dtype)
        generator (int or torch.Generator, optional): seed for the second move.
            (default: seed 0)

    Returns:
        dict: ``{output name: largest absolute change}`` over both moves.

    Raises:
        AssertionError: naming each output that changed, the move and the change.
        ValueError: data that is not periodic, a bad atom or a non-integer ``n``.

    Example:
        >>> from torch_geometric.data import Data
        >>> from equigraph.graph import periodic_radius_graph
        >>> def pair_sum(data):  # sum of exp(-r) over the periodic neighbours
        ...     ei, shift = periodic_radius_graph(data.pos, 2.5, data.cell, data.pbc)
        ...     vec = data.pos[ei[0]] - data.pos[ei[1]] + shift @ data.cell[0]
        ...     return {"energy": torch.exp(-vec.norm(dim=-1)).sum().reshape(1)}
        >>> data = Data(pos=torch.tensor([[0.0, 0, 0], [1.0, 1.1, 0.9]], dtype=torch.float64),
        ...             cell=3.0 * torch.eye(3, dtype=torch.float64)[None], pbc=torch.ones(1, 3, dtype=torch.bool))
        >>> assert_lattice_invariant(pair_sum, data)["energy"] < 1e-12
        True
    """
    what = "assert_lattice_invariant"
    _check_data(data)
    cell, pbc = _periodic_directions(data, what)
    pos = getattr(data, K.POS, None)
    if not isinstance(pos, Tensor) or pos.dim() != 2 or pos.size(-1) != 3 or pos.size(0) == 0:
        raise ValueError(f"{what}: `data.pos` must be a non-empty [N, 3] tensor")
    num = pos.size(0)
    if isinstance(atom, bool) or not isinstance(atom, int) or not -num <= atom < num:
        raise ValueError(f"`atom` must be an int in [-{num}, {num}), got {atom!r}")
    atom %= num
    atol, rtol = _non_negative("atol", atol), _non_negative("rtol", rtol)
    batch = _batch_vector(data, num, pos.device)
    atom_pbc = pbc[int(batch[atom])].cpu()
    if n is None:
        offsets = torch.tensor([1.0, -1.0, 2.0]) * atom_pbc
    else:
        offsets = torch.as_tensor(n, dtype=torch.float64).reshape(-1)
        if offsets.numel() != 3 or not bool((offsets == offsets.round()).all()):
            raise ValueError(f"`n` must be 3 integer lattice offsets, got {n!r}")
        if bool((offsets != 0)[~atom_pbc].any()):
            raise ValueError(f"`n` = {offsets.long().tolist()} moves atom {atom} along a non-periodic direction "
                             f"(pbc {atom_pbc.tolist()})")
    gen = _as_generator(generator)
    node_pbc = pbc[batch.cpu()]
    rand = torch.randint(-2, 3, (num, 3), generator=gen) * node_pbc.long()
    still = rand.abs().sum(-1) == 0  # every atom moves: offset 1 along its periodic directions
    rand[still] = node_pbc[still].long()
    cell64 = cell.to(torch.float64)
    pos64 = pos.detach().to(torch.float64)
    moves = [
        (f"atom {atom} moved by n={offsets.long().tolist()}",
         lattice_translate(pos64, cell64, atom, offsets.to(pos64), batch)),
        ("every atom moved by its own lattice vector",
         pos64 + torch.einsum("ni,nij->nj", rand.to(pos64), cell64[batch])),
    ]

    _, ref = _flatten(model(data.clone()))
    kinds = _output_kinds(model, ref, num)
    errors = {name: 0.0 for name, (_, level) in kinds.items() if level != "edge"}
    failures = []
    for label, new_pos in moves:
        moved = data.clone()
        moved[K.POS] = new_pos.to(pos.dtype)
        _, out = _flatten(model(moved))
        for name in errors:
            value = ref[name]
            expected = value.detach().to(torch.float64)
            if kinds[name] == ("point", "node"):
                expected = expected + (new_pos - pos64)
            if name not in out:
                failures.append(f"output {name!r} is missing after the move ({label})")
                continue
            err, size = _error(out[name], expected)
            errors[name] = max(errors[name], err)
            a, r = _tolerance(value.dtype, atol, rtol)
            if not err <= a + r * size:
                failures.append(f"output {name!r} changes when {label}: max abs change {err:.3g} > tolerance "
                                f"{a + r * size:.3g} (atol {a:g}, rtol {r:g}, {value.dtype})")
    if failures:
        raise AssertionError("not invariant under lattice translations (are periodic image shifts used?):\n  "
                             + "\n  ".join(failures))
    return errors


def _probe_placement(rest: Tensor, cutoff: float, gen: torch.Generator) -> Tuple[Tensor, Tensor, float]:
    """An anchor atom and a unit direction ``u`` such that a probe at ``anchor + s u``
    (``s`` near ``cutoff``) has the anchor at distance ``s`` and every other atom farther
    than ``cutoff + margin``; returns the one with the largest margin."""
    directions = torch.cat([torch.eye(3, dtype=torch.float64), -torch.eye(3, dtype=torch.float64),
                            torch.randn(26, 3, generator=gen, dtype=torch.float64)])
    directions = directions / directions.norm(dim=-1, keepdim=True)
    best = None
    for u in directions:
        i = int((rest @ u).argmax())
        probe = rest[i] + cutoff * u
        dist = (rest - probe).norm(dim=-1)
        dist[i] = math.inf
        margin = float(dist.min()) - cutoff if rest.size(0) > 1 else math.inf
        if best is None or margin > best[2]:
            best = (rest[i], u, margin)
    return best


def assert_smooth_at_cutoff(
    model: Callable,
    data,
    cutoff: float,
    *,
    delta: float = 1e-5,
    probe: int = -1,
    keys: Optional[Iterable[str]] = None,
    factor: float = 4.0,
    atol: Optional[float] = None,
    generator: Union[None, int, torch.Generator] = None,
) -> Dict[str, float]:
    r"""Assert that outputs are continuous, and constant beyond, where a neighbour crosses the
    cutoff.

    Atom ``probe`` is placed on a ray from another atom (the anchor), chosen so that every
    other atom stays farther than the cutoff, at distances :math:`r = c + k\delta`,
    :math:`k \in \{-3, -1, 1, 3\}`, and at :math:`c + 0.5` Å. For each output (energy,
    forces of every atom, ...):

    - continuity: the change across the cutoff, :math:`|y(c + \delta) - y(c - \delta)|`, is
      at most ``factor`` times the change over the same step on either side
      (:math:`|y(c - \delta) - y(c - 3\delta)|`, :math:`|y(c + 3\delta) - y(c + \delta)|`),
      plus ``atol``; a cutoff without a smooth envelope makes it O(1) instead of
      O(:math:`\delta`);
    - beyond the cutoff the outputs are constant: :math:`y(c + \delta)`,
      :math:`y(c + 3\delta)` and :math:`y(c + 0.5)` agree within ``atol``.

    Args:
        model (callable): builds its own radius graph with cutoff ``cutoff``; returns a dict.
        data (Data): a non-periodic structure with at least 2 atoms and no ``edge_index``.
        cutoff (float): the model's cutoff, Å.
        delta (float, optional): :math:`\delta`, Å. (default: :obj:`1e-5`)
        probe (int, optional): the atom that is moved. (default: the last)
        keys (iterable of str, optional): outputs to check. (default: every floating output)
        factor (float, optional): see above. (default: :obj:`4.0`)
        atol (float, optional): absolute allowance. (default: 64 machine epsilons of the
            output dtype times ``max(1, max|y|)``, i.e. rounding only)
        generator (int or torch.Generator, optional): seed for the ray directions tried.
            (default: seed 0)

    Returns:
        dict: ``{output name: change across the cutoff}``.

    Raises:
        AssertionError: naming each output that jumps or moves beyond the cutoff, with numbers.
        ValueError: periodic data, precomputed edges, fewer than 2 atoms, or no ray that keeps
            the other atoms clear of the cutoff.
    """
    what = "assert_smooth_at_cutoff"
    _check_data(data)
    _require_open(data, what)
    cutoff = _positive("cutoff", cutoff)
    delta = _positive("delta", delta)
    factor = _positive("factor", factor)
    atol = _non_negative("atol", atol)
    pos = getattr(data, K.POS, None)
    if not isinstance(pos, Tensor) or pos.dim() != 2 or pos.size(-1) != 3:
        raise ValueError(f"{what}: `data.pos` must be an [N, 3] tensor")
    num = pos.size(0)
    if num < 2:
        raise ValueError(f"{what}: needs at least 2 atoms, got {num}")
    if isinstance(probe, bool) or not isinstance(probe, int) or not -num <= probe < num:
        raise ValueError(f"`probe` must be an int in [-{num}, {num}), got {probe!r}")
    probe %= num
    pos64 = pos.detach().to(torch.float64)
    rest = torch.cat([pos64[:probe], pos64[probe + 1:]])
    anchor, u, margin = _probe_placement(rest.cpu(), cutoff, _as_generator(generator))
    anchor, u = anchor.to(pos64.device), u.to(pos64.device)
    if not margin > 10 * delta:
        raise ValueError(f"{what}: no ray from an atom keeps the other atoms clear of the cutoff by more than "
                         f"{10 * delta:g} Å (best margin {margin:.3g} Å); pass a more compact structure")
    steps = {"c-3d": -3 * delta, "c-d": -delta, "c+d": delta, "c+3d": 3 * delta, "c+0.5": 0.5}
    values: Dict[str, Dict[str, Tensor]] = {}
    for label, offset in steps.items():
        moved = data.clone()
        p = pos64.clone()
        p[probe] = anchor + (cutoff + offset) * u
        moved[K.POS] = p.to(pos.dtype)
        _, out = _flatten(model(moved))
        values[label] = out
    first = values["c-d"]
    if keys is None:
        # outputs whose shape follows the edges (appear with the crossing edge) are not compared
        names = [k for k, v in first.items() if v.is_floating_point()
                 and all(k in out and out[k].shape == v.shape for out in values.values())]
    else:
        names = list(keys)
        missing = [k for k in names if any(k not in out for out in values.values())]
        if missing:
            raise ValueError(f"`keys` names outputs the model did not return: {missing}")
        reshaped = [k for k in names if any(out[k].shape != first[k].shape for out in values.values())]
        if reshaped:
            raise ValueError(f"`keys`: outputs {reshaped} change shape as the atom crosses the cutoff")
    jumps: Dict[str, float] = {}
    failures = []
    for name in names:
        v = {label: out[name].detach().to(torch.float64) for label, out in values.items()}

        def change(x: str, y: str) -> float:
            return float((v[x] - v[y]).abs().max()) if v[x].numel() else 0.0

        scale = max(1.0, max(float(t.abs().max()) if t.numel() else 0.0 for t in v.values()))
        allowed_abs = atol if atol is not None else 64 * torch.finfo(first[name].dtype).eps * scale
        jump = change("c+d", "c-d")
        side = max(change("c-d", "c-3d"), change("c+3d", "c+d"))
        jumps[name] = jump
        if not jump <= factor * side + allowed_abs:
            failures.append(f"output {name!r} jumps as atom {probe} crosses the cutoff (r from {cutoff:g} - {delta:g} "
                            f"to {cutoff:g} + {delta:g} Å): change {jump:.3g}, against {side:.3g} over the same "
                            f"step on either side (allowed {factor:g} x that + {allowed_abs:.3g})")
        beyond = max(change("c+3d", "c+d"), change("c+0.5", "c+d"))
        if not beyond <= allowed_abs:
            failures.append(f"output {name!r} still changes beyond the cutoff (atom {probe} from r = {cutoff:g} + "
                            f"{delta:g} to {cutoff:g} + 0.5 Å): change {beyond:.3g} > {allowed_abs:.3g}")
    if failures:
        raise AssertionError("not smooth at the cutoff (is there a cutoff envelope?):\n  " + "\n  ".join(failures))
    return jumps


def _concatenate(data_a, data_b, shift: Tensor):
    """One graph holding ``data_a`` and ``data_b`` moved by ``shift``; graph-level
    attributes from ``data_a``."""
    na, nb = _num_nodes(data_a), _num_nodes(data_b)
    keys_a, keys_b = set(data_a.keys()), set(data_b.keys())
    if keys_a != keys_b:
        raise ValueError(f"the two fragments carry different attributes: {sorted(keys_a ^ keys_b)}")
    merged = data_a.clone()
    for key in keys_a:
        a, b = data_a[key], data_b[key]
        if key in K.GRAPH_KEYS or not isinstance(a, Tensor) or a.dim() == 0:
            continue
        if a.size(0) != na or not isinstance(b, Tensor) or b.size(0) != nb:
            raise ValueError(f"attribute {key!r} is neither node- nor graph-level; cannot join the fragments")
        if key == K.POS:
            b = b + shift.to(b.dtype)
        merged[key] = torch.cat([a, b], dim=0)
    return merged


def assert_extensive(
    model: Callable,
    data_a,
    data_b,
    cutoff: float,
    *,
    gap: float = 1.0,
    energy_key: str = K.ENERGY,
    atol: Optional[float] = None,
    rtol: Optional[float] = None,
) -> Dict[str, float]:
    r"""Assert that two fragments farther apart than the cutoff do not interact.

    ``data_b`` is moved along :math:`x` until its closest approach to ``data_a`` exceeds
    ``cutoff + gap``, both are joined into one graph, and

    .. math::
        E(A \cup B) = E(A) + E(B)

    with every node-level output (forces, per-atom energies) of each fragment equal to
    its value alone (``"point"`` outputs of ``B`` taken at its moved position). A
    per-graph constant in the energy (e.g. a readout's per-graph ``shift`` left non-zero)
    fails: energies must be sums of atomic terms.

    Args:
        model (callable): builds its own radius graph; returns a dict with ``energy_key``.
        data_a (Data): a non-periodic fragment without ``edge_index``.
        data_b (Data): another, with the same attributes.
        cutoff (float): the model's cutoff, Å.
        gap (float, optional): extra separation beyond the cutoff, Å. (default: :obj:`1.0`)
        energy_key (str, optional): (default: :obj:`"energy"`)
        atol (float, optional): absolute tolerance. (default: by output dtype, see module doc)
        rtol (float, optional): relative tolerance. (default: by output dtype)

    Returns:
        dict: ``{output name: largest absolute error}``.

    Raises:
        AssertionError: naming each output that differs, with numbers.
        ValueError: periodic data, precomputed edges, fragments with different attributes.
    """
    what = "assert_extensive"
    for name, d in (("data_a", data_a), ("data_b", data_b)):
        _check_data(d, name)
        _require_open(d, f"{what} ({name})")
        if not isinstance(getattr(d, K.POS, None), Tensor) or d[K.POS].numel() == 0:
            raise ValueError(f"{what}: `{name}.pos` must be a non-empty [N, 3] tensor")
    cutoff = _positive("cutoff", cutoff)
    gap = _positive("gap", gap)
    atol, rtol = _non_negative("atol", atol), _non_negative("rtol", rtol)
    pos_a = data_a[K.POS].detach().to(torch.float64)
    pos_b = data_b[K.POS].detach().to(torch.float64)
    shift = torch.zeros(3, dtype=torch.float64, device=pos_b.device)
    shift[0] = float(pos_a[:, 0].max() - pos_b[:, 0].min()) + cutoff + gap
    moved_b = data_b.clone()
    moved_b[K.POS] = (pos_b + shift).to(data_b[K.POS].dtype)
    joined = _concatenate(data_a, data_b, shift)
    na = pos_a.size(0)

    out_a = _energy_call(model, data_a.clone(), (energy_key,))
    out_b = _energy_call(model, moved_b, (energy_key,))
    out_ab = _energy_call(model, joined, (energy_key,))
    errors: Dict[str, float] = {}
    failures = []

    def compare(name: str, actual: Tensor, expected: Tensor, dtype: torch.dtype, label: str) -> None:
        err, size = _error(actual, expected)
        errors[name] = max(errors.get(name, 0.0), err)
        a, r = _tolerance(dtype, atol, rtol)
        if not err <= a + r * size:
            failures.append(f"{label}: max abs error {err:.3g} > tolerance {a + r * size:.3g} (atol {a:g}, rtol {r:g})")

    e_a, e_b = _energy_of(out_a, energy_key), _energy_of(out_b, energy_key)
    e_ab = _energy_of(out_ab, energy_key)
    compare(energy_key, e_ab, e_a + e_b, out_ab[energy_key].dtype,
            f"{energy_key!r}: E(A+B) = {float(e_ab.sum()):.10g} but E(A) + E(B) = {float(e_a.sum()):.10g} + "
            f"{float(e_b.sum()):.10g} = {float((e_a + e_b).sum()):.10g}")
    kinds = _output_kinds(model, out_ab, na + pos_b.size(0))
    for name, (type_, level) in kinds.items():
        if level != "node" or name == energy_key or not out_ab[name].is_floating_point():
            continue
        if name not in out_a or name not in out_b:
            failures.append(f"output {name!r} is missing for a fragment alone")
            continue
        expected = torch.cat([out_a[name].detach().to(torch.float64), out_b[name].detach().to(torch.float64)])
        compare(name, out_ab[name], expected, out_ab[name].dtype,
                f"{name!r} of the joined fragments differs from each fragment alone")
    if failures:
        raise AssertionError(f"fragments more than the cutoff ({cutoff:g} Å) apart interact:\n  "
                             + "\n  ".join(failures))
    return errors


class EnergyModelTests(EquivariantModelTests):
    """NequIP-style mixin for energy models (interatomic potentials): inherit it in a
    pytest test class that provides the fixtures

    - ``model``: returns a dict with ``"energy"`` ``[G]`` and ``"forces"`` ``[N, 3]`` (and
      ``"stress"`` ``[G, 3, 3]`` if it computes one), e.g. a
      :class:`~equigraph.models.ForceField`; float64, ``eval()`` mode, building its own
      radius graph (the cutoff is read from ``model.cutoff``);
    - ``data_list``: at least two non-periodic structures of different sizes, float64,
      without ``edge_index``;
    - ``periodic_data`` (optional): one periodic structure (``cell``, ``pbc``), float64;
      the periodic tests skip when the class has no such fixture or it returns
      :obj:`None`.

    and the class gains, besides :class:`EquivariantModelTests`' equivariance and batching
    tests (energy invariant, forces equivariant, under rotations, reflections,
    translations and permutations): forces equal to the finite-difference gradient of the
    energy (:func:`assert_forces_match_energy`, every coordinate of the smallest
    structure, at most ``max_fd_atoms`` atoms), forces summing to zero, E(3) and batching
    on periodic data, invariance under lattice translations
    (:func:`assert_lattice_invariant`), stress equal to the strain derivative of the energy
    (:func:`assert_stress_matches_energy`), smoothness at the cutoff
    (:func:`assert_smooth_at_cutoff`) and additivity of far-apart fragments
    (:func:`assert_extensive`).

    Class attributes: ``energy_key``, ``forces_key``, ``stress_key``; ``cutoff``
    (:obj:`None`: ``model.cutoff``; the cutoff tests skip when neither is set);
    ``fd_step``, ``fd_atol``, ``fd_rtol``, ``max_fd_atoms`` (finite differences);
    ``smooth_delta``; ``extensive_gap``; and ``group``, ``in_types``, ``out_types``,
    ``atol``, ``rtol`` of :class:`EquivariantModelTests` (also used for the lattice,
    batching and extensivity checks).

    The energy must be a sum of atomic terms (a readout's per-graph ``shift`` left at 0)
    for the extensivity test. A :class:`~equigraph.models.ForceField` with
    ``stress=True`` needs a ``cell`` on every structure: give the molecules a box
    (``pbc`` all :obj:`False`).

    Example::

        class TestMyPotential(EnergyModelTests):
            @pytest.fixture
            def model(self):
                return ForceField(MyEnergyModel(cutoff=4.0)).double().eval()

            @pytest.fixture
            def data_list(self):
                return [Data(z=..., pos=...), Data(z=..., pos=...)]

            @pytest.fixture
            def periodic_data(self):
                return from_ase(bulk("Cu", "fcc", a=3.6, cubic=True), dtype=torch.float64)
    """

    energy_key: str = K.ENERGY
    forces_key: str = K.FORCES
    stress_key: str = K.STRESS
    cutoff: Optional[float] = None
    fd_step: float = 1e-5
    fd_atol: float = 1e-6
    fd_rtol: float = 1e-5
    max_fd_atoms: int = 6
    smooth_delta: float = 1e-5
    extensive_gap: float = 1.0

    # -- helpers ---------------------------------------------------------------------
    @staticmethod
    def _periodic_data(request):
        import pytest

        try:
            data = request.getfixturevalue("periodic_data")
        except pytest.FixtureLookupError:
            data = None
        if data is None:
            pytest.skip("no periodic_data fixture (or it returned None)")
        return data

    def _model_cutoff(self, model) -> float:
        import pytest

        cutoff = self.cutoff if self.cutoff is not None else getattr(model, "cutoff", None)
        if cutoff is None:
            pytest.skip("the model has no cutoff (set the class attribute `cutoff`)")
        return float(cutoff)

    def _fd_atoms(self, data) -> List[int]:
        return list(range(min(_num_nodes(data), self.max_fd_atoms)))

    def _has_stress(self, model, data) -> bool:
        out = model(data.clone())
        return isinstance(out, Mapping) and isinstance(out.get(self.stress_key), Tensor)

    # -- tests -----------------------------------------------------------------------
    def test_energy_and_forces_shapes(self, model, data_list):
        from torch_geometric.data import Batch

        batch = Batch.from_data_list(list(data_list))
        out = _energy_call(model, batch, (self.energy_key, self.forces_key))
        energy, forces = out[self.energy_key], out[self.forces_key]
        assert tuple(energy.reshape(-1).shape) == (len(data_list),), (
            f"{self.energy_key!r} has shape {tuple(energy.shape)}, expected one per graph ({len(data_list)})")
        assert tuple(forces.shape) == (batch.num_nodes, 3), (
            f"{self.forces_key!r} has shape {tuple(forces.shape)}, expected ({batch.num_nodes}, 3)")
        for name, value in out.items():
            if isinstance(value, Tensor) and value.is_floating_point():
                assert bool(torch.isfinite(value).all()), f"output {name!r} contains NaN or inf"

    def test_forces_match_energy(self, model, data_list):
        data = min(data_list, key=_num_nodes)
        assert_forces_match_energy(model, data, atoms=self._fd_atoms(data), step=self.fd_step, atol=self.fd_atol,
                                   rtol=self.fd_rtol, energy_key=self.energy_key, forces_key=self.forces_key)

    def test_forces_match_energy_periodic(self, model, request):
        data = self._periodic_data(request)
        assert_forces_match_energy(model, data, atoms=self._fd_atoms(data), step=self.fd_step, atol=self.fd_atol,
                                   rtol=self.fd_rtol, energy_key=self.energy_key, forces_key=self.forces_key)

    def test_forces_sum_to_zero(self, model, data_list, request):
        # Newton's third law: a translation-invariant energy has no net force, periodic or not.
        import pytest

        graphs = list(data_list)
        try:
            periodic = request.getfixturevalue("periodic_data")
        except pytest.FixtureLookupError:
            periodic = None
        if periodic is not None:
            graphs.append(periodic)
        for i, data in enumerate(graphs):
            forces = _energy_call(model, data.clone(), (self.forces_key,))[self.forces_key].detach()
            net = forces.to(torch.float64).sum(dim=0)
            a, r = _tolerance(forces.dtype, self.atol, self.rtol)
            allowed = a + r * forces.size(0) * float(forces.abs().max())
            assert float(net.abs().max()) <= allowed, (
                f"structure {i}: the forces sum to {_fmt_vec(net)}, not zero (tolerance {allowed:.3g})")

    def test_equivariant_periodic(self, model, request):
        assert_equivariant(model, self._periodic_data(request), self.group, **self._kwargs())

    def test_batch_consistent_periodic(self, model, request):
        data = self._periodic_data(request)
        other = data.clone()
        gen = torch.Generator().manual_seed(0)
        other[K.POS] = data[K.POS] + 0.05 * torch.randn(data[K.POS].shape, generator=gen, dtype=torch.float64).to(
            data[K.POS])
        assert_batch_consistent(model, [data, other], atol=self.atol, rtol=self.rtol)

    def test_lattice_translation(self, model, request):
        assert_lattice_invariant(model, self._periodic_data(request), atol=self.atol, rtol=self.rtol)

    def test_stress_matches_energy(self, model, request):
        import pytest

        data = self._periodic_data(request)
        if not self._has_stress(model, data):
            pytest.skip(f"the model returns no {self.stress_key!r}")
        assert_stress_matches_energy(model, data, step=self.fd_step, atol=self.fd_atol, rtol=self.fd_rtol,
                                     energy_key=self.energy_key, stress_key=self.stress_key)

    def test_smooth_at_cutoff(self, model, data_list):
        cutoff = self._model_cutoff(model)
        out = model(data_list[0].clone())
        keys = [k for k in (self.energy_key, self.forces_key, self.stress_key, K.NODE_ENERGY) if k in out]
        assert_smooth_at_cutoff(model, data_list[0], cutoff, delta=self.smooth_delta, keys=keys)

    def test_extensive(self, model, data_list):
        cutoff = self._model_cutoff(model)
        assert_extensive(model, data_list[0], data_list[1], cutoff, gap=self.extensive_gap,
                         energy_key=self.energy_key, atol=self.atol, rtol=self.rtol)
