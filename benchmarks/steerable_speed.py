"""Speed and peak memory of equigraph's steerable models (SEGNN, TFN) against a
re-implementation of the original SEGNN code, on the same weights and inputs (outputs
checked to agree first), one CPU thread (or one GPU with ``--device cuda``), medians of
interleaved rounds.

Settings (SEGNN's own configurations, ``--subspace_type=weightbalanced``):

- ``nbody``: 100 systems x 5 particles, fully connected (2,000 edges).
  SEGNN: hidden ``WeightBalancedIrreps(64, l<=1)`` = 32x0e+32x1o, attributes l <= 1, 4
  layers, no norm, input ``2x1o+1x0e``, output ``1x1o``, extra message features ``2x0e``
  (|r_ij|, q_i q_j); the whole network (embedding, 4 layers, 2 output layers) against the
  original ``SEGNN``. TFN: ``equigraph.models.TFN`` as in ``configs/nbody_tfn.yaml``.
  Issue anchor: the original code's train step, 178.6 ms on this machine kind (1 thread).
- ``qm9_2A`` / ``qm9_5A``: 96 molecule-like point clouds of 18 atoms (bonds 1.0-1.55 Å,
  non-bonded pairs >= 1.75 Å), radius graph 2 Å / 5 Å. SEGNN's QM9 network (hidden
  ``WeightBalancedIrreps(128, l<=3, lmax=2)`` = 36x0e+36x1o+36x2e, attributes l <= 3,
  instance norm, extra ``1x0e`` = |r_ij|^2): one message-passing layer, and the whole
  7-layer network (embedding of a 5-element one-hot, 7 layers, pre-pool, mean pool,
  post-pool) against the original ``SEGNN``. TFN: ``equigraph.models.TFN`` with its
  default irreps (32x0e+16x1o+8x2e, l <= 2 filters), 4 layers, an embedding of ``z``, a
  summed scalar readout, radial cutoff = the graph's radius.

For each: forward (no grad) and a train step (zero_grad, forward, loss, backward, Adam
step), eager and ``torch.compile``, and the peak memory of one train step. Also e3nn's
tensor-product code paths on the first message tensor product of each SEGNN setting.

    python benchmarks/steerable_speed.py                  # CPU, 1 thread (~20 min)
    python benchmarks/steerable_speed.py --device cuda    # one GPU
    python benchmarks/steerable_speed.py --quick --settings nbody --no-compile  # smoke run
"""
from __future__ import annotations

import argparse
import copy
import ctypes
import gc
import re
import sys
import time
from pathlib import Path

import torch
from e3nn import o3
from torch import nn
from torch_geometric.data import Data
from torch_geometric.nn import global_mean_pool

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _results  # noqa: E402
from benchmarks.egnn_speed import resolve_device, time_jobs  # noqa: E402
from benchmarks.reference import segnn_original as orig  # noqa: E402
from equigraph.models.tfn import TFN  # noqa: E402
from equigraph.nn import edge_vec  # noqa: E402
from equigraph.nn.conv.segnn import SEGNNConv  # noqa: E402
from equigraph.nn.steerable import (  # noqa: E402
    O3TensorProduct, O3TensorProductGate, SteerableAttributes, WeightBalancedIrreps,
)

NAME = "steerable_speed"
TOL = 1e-4  # float32: relative agreement required before timing
SETTINGS = ("nbody", "qm9_2A", "qm9_5A")
PARTS = ("segnn", "layer", "tfn", "tp")
ELEMENTS = (1, 6, 7, 8, 9)


# ---------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------
def nbody_batch(graphs=100, nodes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(graphs * nodes, 3, generator=g)
    vel = torch.randn(graphs * nodes, 3, generator=g)
    charge = torch.randint(0, 2, (graphs * nodes, 1), generator=g).float() * 2 - 1
    i, j = torch.meshgrid(torch.arange(nodes), torch.arange(nodes), indexing="ij")
    mask = i != j
    edge_index = torch.cat([torch.stack([j[mask], i[mask]]) + k * nodes for k in range(graphs)], dim=1)
    batch = torch.arange(graphs).repeat_interleave(nodes)
    vec = edge_vec(pos, edge_index)
    # SEGNN's N-body inputs: x = (pos - mean, vel, |vel|), extra = (|r_ij|, q_i q_j).
    x = torch.cat([pos - pos.mean(1, keepdim=True), vel, vel.norm(dim=1, keepdim=True)], dim=1)
    extra = torch.cat([vec.norm(dim=1, keepdim=True), charge[edge_index[0]] * charge[edge_index[1]]], dim=1)
    target = pos + 0.1 * torch.randn(pos.shape, generator=g)
    return dict(pos=pos, vel=vel, charge=charge, x=x, edge_index=edge_index, batch=batch, vec=vec, extra=extra,
                target=target, num_graphs=graphs)


def molecules(num=96, atoms=18, seed=0):
    """Molecule-like clouds: each atom 1.0-1.55 Å from a random earlier one, every other
    pair >= 1.75 Å (about QM9's density: ~2.7 neighbours within 2 Å, ~13 within 5 Å)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(num):
        pos = torch.zeros(1, 3, dtype=torch.float64)
        while pos.size(0) < atoms:
            k = int(torch.randint(0, pos.size(0), (1,), generator=g))
            d = torch.randn(3, generator=g, dtype=torch.float64)
            cand = pos[k] + d / d.norm() * (1.0 + 0.55 * float(torch.rand(1, generator=g)))
            dist = (pos - cand).norm(dim=1)
            dist[k] = 2.0
            if float(dist.min()) >= 1.75:
                pos = torch.cat([pos, cand[None]])
        out.append(pos.float())
    return out


def qm9_batch(radius, seed=0, num=96, atoms=18):
    mols = molecules(num=num, atoms=atoms, seed=seed)
    pos, edges, batch, offset = [], [], [], 0
    for k, p in enumerate(mols):
        close = (torch.cdist(p, p) < radius) & ~torch.eye(len(p), dtype=torch.bool)
        i, j = close.nonzero().t()
        edges.append(torch.stack([j, i]) + offset)
        pos.append(p)
        batch.append(torch.full((len(p),), k))
        offset += len(p)
    pos, edge_index, batch = torch.cat(pos), torch.cat(edges, dim=1), torch.cat(batch)
    vec = edge_vec(pos, edge_index)
    return dict(pos=pos, edge_index=edge_index, batch=batch, vec=vec, extra=vec.square().sum(1, keepdim=True),
                num_graphs=len(mols))


# ---------------------------------------------------------------------------------------
# equigraph side: SEGNN's network composed from equigraph's layers (benchmark only; the
# models live in equigraph.models)
# ---------------------------------------------------------------------------------------
class _TPSiLU(nn.Module):
    """SEGNN's gate on scalar-only irreps is a plain SiLU."""

    def __init__(self, irreps_in, irreps_out, backend="e3nn"):
        super().__init__()
        self.tp = O3TensorProduct(irreps_in, irreps_out, backend=backend)

    def forward(self, x):
        return torch.nn.functional.silu(self.tp(x))


class SEGNNNet(nn.Module):
    def __init__(self, input_irreps, hidden, output, attr, num_layers, extra, norm=None, task="node",
                 backend="e3nn"):
        super().__init__()
        self.task = task
        kw = dict(backend=backend)
        self.embedding_layer = O3TensorProduct(input_irreps, hidden, attr, **kw)
        self.layers = nn.ModuleList([SEGNNConv(hidden, hidden, hidden, attr, attr, extra, norm=norm,
                                               tp_backend=backend) for _ in range(num_layers)])
        self.pre_pool1 = O3TensorProductGate(hidden, hidden, attr, **kw)
        if task == "graph":
            pooled = (o3.Irreps(output) * hidden.num_irreps).simplify().sort().irreps
            self.pre_pool2 = O3TensorProduct(hidden, pooled, attr, **kw)
            self.post_pool1 = (_TPSiLU(pooled, pooled, backend) if pooled.lmax == 0
                               else O3TensorProductGate(pooled, pooled, **kw))
            self.post_pool2 = O3TensorProduct(pooled, output, **kw)
        else:
            self.pre_pool2 = O3TensorProduct(hidden, output, attr, **kw)

    def forward(self, x, edge_index, edge_attr, node_attr, extra, batch):
        x = self.embedding_layer(x, node_attr)
        for layer in self.layers:
            x = layer(x, edge_index, edge_attr, node_attr, extra, batch)
        x = self.pre_pool2(self.pre_pool1(x, node_attr), node_attr)
        if self.task == "graph":
            x = self.post_pool2(self.post_pool1(global_mean_pool(x, batch)))
        return x


def copy_weights(ours: nn.Module, original: nn.Module) -> None:
    """Load equigraph's parameters into the original layout (``tp.weight``, ``biases``)."""
    target = dict(original.named_parameters())
    mapped = {}
    for name, value in ours.named_parameters():
        if not re.search(r"norm\.(weight|bias)$", name):
            name = re.sub(r"\.tp\.tp\.weight$", ".tp.weight", name)
            name = re.sub(r"(\.tp)?\.bias$", ".biases", name)
        mapped[name] = value
    if set(mapped) != set(target):
        raise RuntimeError(f"parameter names differ: {sorted(set(mapped) ^ set(target))}")
    with torch.no_grad():
        for name, value in mapped.items():
            if target[name].shape != value.shape:
                raise RuntimeError(f"{name}: shape {tuple(value.shape)} vs original {tuple(target[name].shape)}")
            target[name].copy_(value)


def _check(name, ours, ref):
    err = (ours - ref).abs().max().item()
    scale = ref.abs().max().item()
    if not err <= TOL * max(scale, 1.0):
        raise RuntimeError(f"{name}: the two implementations disagree by {err:.3g} (scale {scale:.3g})")
    return err


# ---------------------------------------------------------------------------------------
# Timing and memory
# ---------------------------------------------------------------------------------------
def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(jobs, rounds, device, inner=1, warmup=2):
    """Median ms per call of every job over ``rounds`` interleaved rounds (a load change on
    the shared machine hits all jobs alike): :func:`benchmarks.egnn_speed.time_jobs`."""
    return time_jobs(jobs, rounds, inner, device, warmup)[0]


def _forward(fn):
    def job():
        with torch.no_grad():
            fn()
    return job


def _train(fn, model, loss_fn):
    opt = torch.optim.Adam(model.parameters(), lr=1e-12)

    def job():
        opt.zero_grad()
        loss_fn(fn()).backward()
        opt.step()
    return job


def _proc_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def cpu_peak_supported() -> bool:
    """Linux can reset a process's peak RSS (``/proc/self/clear_refs`` = 5, Linux >= 4.0)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _proc_kib("VmHWM") <= _proc_kib("VmRSS") + 1024
    except (OSError, AttributeError, RuntimeError):
        return False


def peak_memory_mib(job, device):
    """Peak memory of one call of ``job`` above what the process holds just before it
    (model, inputs, gradients and Adam state of earlier steps), MiB. CUDA:
    ``max_memory_allocated`` after ``reset_peak_memory_stats``. CPU: free heap pages are
    handed back (``malloc_trim(0)``), the peak RSS is reset (``/proc/self/clear_refs``)
    and the peak RSS (``VmHWM``) after the call is compared with the RSS before it."""
    gc.collect()
    sync(device)
    if device.type == "cuda":
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        job()
        sync(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2 ** 20
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    base = _proc_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    job()
    return (_proc_kib("VmHWM") - base) / 1024


def measure(case, rounds, device, inner=1, warmup=2, memory=True):
    """Times forward and train step of every implementation of ``case`` (interleaved), then
    the peak memory of one more train step of each."""
    jobs, train = {}, {}
    for name, (model, fn) in case["impls"].items():
        jobs[(name, "forward")] = _forward(fn)
        jobs[(name, "train step")] = train[name] = _train(fn, model, case["loss"])
    ms = interleaved(jobs, rounds, device, inner=inner, warmup=warmup)
    mib = {name: peak_memory_mib(job, device) for name, job in train.items()} if memory else {}
    return ms, mib


def compiled_variant(model, call, loss_fn, reference, what, regional=None):
    """``call(m)`` runs model ``m``. Whole-model ``torch.compile`` (``regional=None``), or
    ``regional(copy)`` names the blocks of a copy of ``model`` to compile one by one (they
    are traced one by one: e3nn generates a new module class per tensor product, so dynamo's
    type guards fail from one block to the next; the inductor cache makes the repeats cheap).
    Warmed up (forward and backward graphs, a no-grad forward) and checked against
    ``reference``. Returns ``(module, fn, seconds, max diff)``."""
    t = time.perf_counter()
    if regional is None:
        target, module = torch.compile(model), model
    else:
        module = target = copy.deepcopy(model)
        blocks = list(regional(module))
        # Two entries (grad and no-grad) per block on one code object: past dynamo's default
        # limit of 8, the remaining blocks would silently run eager.
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 4 * len(blocks))
        for block in blocks:
            block.compile()
    loss_fn(call(target)).backward()
    with torch.no_grad():
        out = call(target)
    module.zero_grad(set_to_none=True)
    err = _check(what, out, reference)
    return module, (lambda: call(target)), round(time.perf_counter() - t, 1), err


def _cueq_available(device) -> bool:
    if device.type != "cuda":
        return False  # cuequivariance's CPU path is its naive reference, not a speed option
    try:
        import cuequivariance_torch  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------------------
# Cases: every implementation of one model on one batch, sharing one loss
# ---------------------------------------------------------------------------------------
def _to(d, device):
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in d.items()}


def segnn_nbody(device, compile_model, where):
    d = _to(nbody_batch(), device)
    attrs = SteerableAttributes(lmax=1)
    edge_attr, node_attr = attrs(d["vec"], d["edge_index"], d["x"].size(0))
    hidden = WeightBalancedIrreps(64, attrs.irreps_out)
    args = (o3.Irreps("2x1o+1x0e"), hidden, o3.Irreps("1x1o"), attrs.irreps_out, 4, o3.Irreps("2x0e"))
    torch.manual_seed(0)
    ours = SEGNNNet(*args)
    original = orig.SEGNN(args[0], hidden, args[2], args[3], args[3], num_layers=4, norm=None, task="node",
                          additional_message_irreps=args[5])
    copy_weights(ours, original)
    ours.to(device), original.to(device)
    graph = Data(x=d["x"], edge_index=d["edge_index"], edge_attr=edge_attr, node_attr=node_attr.clone(),
                 additional_message_features=d["extra"], batch=d["batch"])
    call = lambda m: m(d["x"], d["edge_index"], edge_attr, node_attr, d["extra"], d["batch"])  # noqa: E731
    run_orig = lambda: original(graph)  # noqa: E731
    with torch.no_grad():
        ref = run_orig()
        err = _check("nbody network", call(ours), ref)
    loss = lambda out: torch.nn.functional.mse_loss(d["pos"] + out, d["target"])  # noqa: E731
    impls = {"original SEGNN": (original, run_orig), "equigraph SEGNNConv": (ours, lambda: call(ours))}
    notes = {"max_abs_diff": err}
    if _cueq_available(device):
        cueq = SEGNNNet(*args, backend="cueq").to(device)
        cueq.load_state_dict(ours.state_dict())
        with torch.no_grad():
            notes["max_abs_diff_cueq"] = _check("nbody network, cueq", call(cueq), ref)
        impls["equigraph SEGNNConv, cueq backend"] = (cueq, lambda: call(cueq))
    if compile_model:
        module, fn, notes["compile_s"], notes["max_abs_diff_compiled"] = compiled_variant(
            ours, call, loss, ref, "compiled nbody network")
        impls["equigraph SEGNNConv + torch.compile"] = (module, fn)
    label = (f"nbody: 100 x 5 nodes, {d['edge_index'].size(1)} edges, hidden {hidden}, attr l<=1, "
             f"4 layers + embedding/output, {where}")
    return dict(label=label, reference="original SEGNN", impls=impls, loss=loss, notes=notes)


def _qm9_inputs(radius, device):
    d = qm9_batch(radius)
    n = d["pos"].size(0)
    g = torch.Generator().manual_seed(3)
    species = torch.randint(0, len(ELEMENTS), (n,), generator=g)
    d["z"] = torch.tensor(ELEMENTS)[species]
    d["onehot"] = torch.nn.functional.one_hot(species, len(ELEMENTS)).float()
    d["target"] = torch.randn(d["num_graphs"], generator=g)
    return _to(d, device)


def segnn_qm9_layer(radius, device, compile_model, where):
    d = _qm9_inputs(radius, device)
    attrs = SteerableAttributes(lmax=3)
    n = d["pos"].size(0)
    edge_attr, node_attr = attrs(d["vec"], d["edge_index"], n)
    hidden = WeightBalancedIrreps(128, attrs.irreps_out, lmax=2)
    torch.manual_seed(0)
    ours = SEGNNConv(hidden, hidden, hidden, attrs.irreps_out, attrs.irreps_out, "1x0e", norm="instance")
    original = orig.SEGNNLayer(hidden, hidden, hidden, attrs.irreps_out, attrs.irreps_out, norm="instance",
                               additional_message_irreps=o3.Irreps("1x0e"))
    copy_weights(ours, original)
    ours.to(device), original.to(device)
    x = torch.randn(n, hidden.dim, generator=torch.Generator().manual_seed(1)).to(device)
    call = lambda m: m(x, d["edge_index"], edge_attr, node_attr, d["extra"], d["batch"])  # noqa: E731
    # The original's update adds the residual in place into its input: give it a copy.
    run_orig = lambda: original(x.clone(), d["edge_index"], edge_attr, node_attr, d["batch"], d["extra"])  # noqa: E731
    with torch.no_grad():
        ref = run_orig()
        err = _check(f"qm9 {radius} Å layer", call(ours), ref)
    loss = lambda out: out.square().mean()  # noqa: E731
    impls = {"original SEGNNLayer": (original, run_orig), "equigraph SEGNNConv": (ours, lambda: call(ours))}
    notes = {"max_abs_diff": err}
    if compile_model:
        module, fn, notes["compile_s"], notes["max_abs_diff_compiled"] = compiled_variant(
            ours, call, loss, ref, f"compiled qm9 {radius} Å layer")
        impls["equigraph SEGNNConv + torch.compile"] = (module, fn)
    label = (f"qm9_{radius:g}A layer: 96 x 18 atoms, radius {radius:g} Å, {d['edge_index'].size(1)} edges, "
             f"hidden {hidden}, attr l<=3, instance norm, one layer, {where}")
    return dict(label=label, reference="original SEGNNLayer", impls=impls, loss=loss, notes=notes)


def segnn_qm9_model(radius, device, compile_model, where, channels=128, layers=7):
    d = _qm9_inputs(radius, device)
    attrs = SteerableAttributes(lmax=3)
    n = d["pos"].size(0)
    edge_attr, node_attr = attrs(d["vec"], d["edge_index"], n)
    hidden = WeightBalancedIrreps(channels, attrs.irreps_out, lmax=2)
    args = (o3.Irreps(f"{len(ELEMENTS)}x0e"), hidden, o3.Irreps("1x0e"), attrs.irreps_out, layers,
            o3.Irreps("1x0e"))
    torch.manual_seed(0)
    ours = SEGNNNet(*args, norm="instance", task="graph")
    original = orig.SEGNN(args[0], hidden, args[2], args[3], args[3], num_layers=layers, norm="instance",
                          pool="avg", task="graph", additional_message_irreps=args[5])
    copy_weights(ours, original)
    ours.to(device), original.to(device)
    x = d["onehot"]
    graph = Data(x=x, edge_index=d["edge_index"], edge_attr=edge_attr, node_attr=node_attr.clone(),
                 additional_message_features=d["extra"], batch=d["batch"])
    call = lambda m: m(x, d["edge_index"], edge_attr, node_attr, d["extra"], d["batch"])  # noqa: E731
    run_orig = lambda: original(graph)  # noqa: E731
    with torch.no_grad():
        ref = run_orig()
        err = _check(f"qm9 {radius} Å network", call(ours), ref)
    loss = lambda out: torch.nn.functional.mse_loss(out.view(-1), d["target"])  # noqa: E731
    impls = {"original SEGNN": (original, run_orig), "equigraph SEGNNConv": (ours, lambda: call(ours))}
    notes = {"max_abs_diff": err}
    if compile_model:
        # Regional compilation: the 7 layers share one compiled graph (compiling the whole
        # network would compile 7 copies of it: tens of minutes on this CPU).
        module, fn, notes["compile_s"], notes["max_abs_diff_compiled"] = compiled_variant(
            ours, call, loss, ref, f"compiled qm9 {radius} Å network", regional=lambda m: m.layers)
        impls["equigraph SEGNNConv + torch.compile"] = (module, fn)
    width = "the paper's QM9 network" if (channels, layers) == (128, 7) else "REDUCED from the paper's 128 / 7"
    label = (f"qm9_{radius:g}A SEGNN: 96 x 18 atoms, radius {radius:g} Å, {d['edge_index'].size(1)} edges, "
             f"{channels} channels = hidden {hidden}, {layers} layers ({width}), attr l<=3, instance norm, "
             f"mean pool, {where}")
    return dict(label=label, reference="original SEGNN", impls=impls, loss=loss, notes=notes)


def _tfn_case(model, data, loss, device, compile_model, what):
    model.to(device)
    call = lambda m: m(data)  # noqa: E731
    out_key = "pos" if model.positions else "y"
    impls = {"equigraph TFN": (model, lambda: call(model)[out_key])}
    notes = {}
    if compile_model:
        with torch.no_grad():
            ref = model(data)[out_key]
        # Regional: the model's input checks read tensor values (graph breaks); its
        # convolutions and gates are plain tensor code.
        module, fn, notes["compile_s"], notes["max_abs_diff_compiled"] = compiled_variant(
            model, lambda m: m(data)[out_key], loss, ref, f"compiled {what}",
            regional=lambda m: [*m.convs, *m.gates, *([m.output_conv] if m.output_conv is not None else [])])
        impls["equigraph TFN + torch.compile"] = (module, fn)
    return impls, notes


def tfn_nbody(device, compile_model, where):
    d = _to(nbody_batch(), device)
    torch.manual_seed(0)
    # configs/nbody_tfn.yaml
    model = TFN("32x0e+16x1o+8x2e", num_layers=4, lmax=2, in_channels=1, scalar_inputs=["charges"],
                vector_inputs=["vel"], num_basis=16, radial_hidden=64, radial_cutoff=20.0, positions=True,
                interaction_graph="full")
    data = Data(pos=d["pos"], x=d["vel"].norm(dim=1, keepdim=True), vel=d["vel"], charges=d["charge"].view(-1),
                edge_index=d["edge_index"], batch=d["batch"], num_graphs=d["num_graphs"])
    loss = lambda out: torch.nn.functional.mse_loss(out, d["target"])  # noqa: E731
    impls, notes = _tfn_case(model, data, loss, device, compile_model, "nbody TFN")
    label = (f"nbody TFN: 100 x 5 nodes, {d['edge_index'].size(1)} edges, configs/nbody_tfn.yaml (hidden "
             f"32x0e+16x1o+8x2e, l<=2 filters, 4 layers, 1o output), {where}")
    return dict(label=label, reference=None, impls=impls, loss=loss, notes=notes)


def tfn_qm9(radius, device, compile_model, where):
    d = _qm9_inputs(radius, device)
    torch.manual_seed(0)
    model = TFN("32x0e+16x1o+8x2e", num_layers=4, lmax=2, out_channels=1, interaction_graph=radius)
    data = Data(pos=d["pos"], z=d["z"], edge_index=d["edge_index"], batch=d["batch"], num_graphs=d["num_graphs"])
    loss = lambda out: torch.nn.functional.mse_loss(out.view(-1), d["target"])  # noqa: E731
    impls, notes = _tfn_case(model, data, loss, device, compile_model, f"qm9 {radius} Å TFN")
    label = (f"qm9_{radius:g}A TFN: 96 x 18 atoms, radius {radius:g} Å, {d['edge_index'].size(1)} edges, "
             f"hidden 32x0e+16x1o+8x2e, l<=2 filters, 4 layers, z embedding, summed readout, polynomial "
             f"envelope, {where}")
    return dict(label=label, reference=None, impls=impls, loss=loss, notes=notes)


class _E3nnVariant(nn.Module):
    """``ours`` with its e3nn tensor product rebuilt with other code-generation options
    (same instructions, same weights, same bias)."""

    def __init__(self, ours, **options):
        super().__init__()
        instructions = [(i.i_in1, i.i_in2, i.i_out, i.connection_mode, i.has_weight) for i in ours.tp.instructions]
        self.tp = o3.TensorProduct(ours.irreps_in, ours.irreps_attr, ours.irreps_out, instructions,
                                   irrep_normalization="component", path_normalization="none",
                                   internal_weights=True, shared_weights=True, **options)
        with torch.no_grad():
            self.tp.weight.copy_(ours.tp.weight)
        self.ours = ours

    def forward(self, x, a):
        return self.ours.add_bias(self.tp(x, a))


class _Unmerged(nn.Module):
    """``ours`` through its unmerged e3nn tensor product ``ours.tp`` (one path per pair of
    input and attribute blocks, the input's equal irreps kept apart): equigraph's default
    before equal input irreps were merged, on the same weights and bias."""

    def __init__(self, ours):
        super().__init__()
        self.ours = ours

    def forward(self, x, a):
        return self.ours.add_bias(self.ours.tp(x, a))


DEFAULT_TP = "equigraph default: e3nn TensorProduct, folded rescale, equal input irreps merged"
UNMERGED_TP = "equigraph before: e3nn TensorProduct, folded rescale, unmerged"


def tensor_product_paths(setting, rounds, device, compile_tp):
    """The first message tensor product of ``setting`` through several e3nn code paths."""
    if setting == "nbody":
        attr, extra, edges = o3.Irreps.spherical_harmonics(1), o3.Irreps("2x0e"), 2000
        hidden = WeightBalancedIrreps(64, attr)
    else:
        attr, extra = o3.Irreps.spherical_harmonics(3), o3.Irreps("1x0e")
        hidden = WeightBalancedIrreps(128, attr, lmax=2)
        edges = qm9_batch(2.0 if setting == "qm9_2A" else 5.0)["edge_index"].size(1)
    irreps_in = (hidden + hidden + extra).simplify()
    torch.manual_seed(0)
    ours = O3TensorProductGate(irreps_in, hidden, attr).tp
    original = orig.O3TensorProduct(irreps_in, ours.irreps_out, attr)
    with torch.no_grad():
        original.tp.weight.copy_(ours.tp.weight)
        original.biases.copy_(ours.bias)
    ours.to(device), original.to(device)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(edges, irreps_in.dim, generator=g).to(device)
    a = o3.spherical_harmonics(attr, torch.randn(edges, 3, generator=g), True, normalization="component").to(device)
    xg = x.clone().requires_grad_()
    # ours (O3TensorProduct) merges the equal irreps of its input: the library's default path.
    # The unmerged rows run the same weights through the one-path-per-block layout.
    paths = {"original: e3nn FullyConnectedTP + rescale": original,
             DEFAULT_TP: ours,
             UNMERGED_TP: _Unmerged(ours),
             "unmerged e3nn TensorProduct, _specialized_code=False": _E3nnVariant(ours, _specialized_code=False
                                                                                   ).to(device),
             "unmerged e3nn TensorProduct, _optimize_einsums=False": _E3nnVariant(ours, _optimize_einsums=False
                                                                                   ).to(device)}
    if _cueq_available(device):
        cueq = O3TensorProduct(ours.irreps_in, ours.irreps_out, ours.irreps_attr, backend="cueq").to(device)
        cueq.load_state_dict(ours.state_dict())
        paths["equigraph default, cueq backend (merged)"] = cueq
    notes = {"edges": edges, "irreps_in": str(irreps_in), "irreps_out": str(ours.irreps_out),
             "weights": ours.weight_numel}
    with torch.no_grad():
        ref = original(x, a)
        notes["max_abs_diff"] = max(_check(f"{setting} tensor product, {name}", tp(x, a), ref)
                                    for name, tp in paths.items())
    if compile_tp:
        compiled = torch.compile(ours)
        t = time.perf_counter()
        compiled(xg, a).sum().backward()
        with torch.no_grad():
            notes["max_abs_diff_compiled"] = _check(f"compiled {setting} tensor product", compiled(x, a), ref)
        notes["compile_s"] = round(time.perf_counter() - t, 1)
        paths["equigraph + torch.compile"] = compiled
    jobs = {}
    for name, tp in paths.items():
        jobs[(name, "forward")] = _forward(lambda tp=tp: tp(x, a))
        jobs[(name, "forward+backward")] = lambda tp=tp: tp(xg, a).sum().backward()
    return interleaved(jobs, rounds, device, warmup=2 if setting == "nbody" else 1), notes


# ---------------------------------------------------------------------------------------
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default: 1)")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="eager only")
    parser.add_argument("--no-compile-qm9", dest="compile_qm9", action="store_false",
                        help="compile the N-body models only (a cold compile of the QM9 layers takes minutes)")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory steps")
    parser.add_argument("--name", default=NAME, help="results/NAME.json and .md")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS,
                        help="segnn: the whole SEGNN network; layer: one SEGNN layer (QM9); tfn; tp: tensor "
                             "product code paths")
    parser.add_argument("--qm9-channels", type=int, default=128, help="SEGNN QM9 network width (paper: 128)")
    parser.add_argument("--qm9-layers", type=int, default=7, help="SEGNN QM9 network depth (paper: 7)")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    torch.set_num_threads(args.threads)
    where = f"CUDA ({torch.cuda.get_device_name(device)})" if cuda else f"{args.threads} thread(s)"
    memory = args.memory and (cuda or cpu_peak_supported())
    rows, lines = [], []
    # Rounds per (setting, part); the 5 Å network is ~20 s per original train step on 1 thread.
    scale = 5 if cuda else 1
    rounds = {("nbody", "segnn"): 15, ("nbody", "tfn"): 15, ("nbody", "tp"): 15,
              ("qm9_2A", "layer"): 5, ("qm9_2A", "segnn"): 3, ("qm9_2A", "tfn"): 5, ("qm9_2A", "tp"): 5,
              ("qm9_5A", "layer"): 2, ("qm9_5A", "segnn"): 2, ("qm9_5A", "tfn"): 3, ("qm9_5A", "tp"): 2}

    def report(model, label, metric, value, unit):
        print(f"  {model:75s} {metric:22s} {value:10.4g} {unit}", flush=True)
        rows.append(_results.row(model, label, metric, value if unit == "abs" else round(value, 3), unit))

    def speedups(ms, label, reference, metrics):
        for other in dict.fromkeys(m for m, _ in ms):
            if other == reference:
                continue
            for metric in metrics:
                if (other, metric) in ms:
                    report(f"speed-up: {other} vs {reference}", label, metric,
                           ms[(reference, metric)] / ms[(other, metric)], "x")

    def run_case(key, case, n_rounds, inner=1, warmup=2):
        print(case["label"], case["notes"], flush=True)
        ms, mib = measure(case, scale * n_rounds, device, inner=inner, warmup=warmup, memory=memory)
        for (model, metric), value in ms.items():
            report(model, case["label"], metric, value, "ms")
        for model, value in mib.items():
            report(model, case["label"], "train step peak memory", value, "MiB")
        notes = case["notes"]
        for k in ("max_abs_diff", "max_abs_diff_cueq"):
            if k in notes:
                what = "cueq backend" if k.endswith("cueq") else "equigraph"
                # No "|" in a model name: it would split the Markdown table's cell.
                report(f"max abs diff, {what} vs original (same weights)", case["label"], "output", notes[k], "abs")
        if "max_abs_diff_compiled" in notes and case["reference"] is None:
            report("max abs diff, compiled vs eager", case["label"], "output", notes["max_abs_diff_compiled"], "abs")
        if case["reference"] is not None:
            speedups(ms, case["label"], case["reference"], ["forward", "train step"])
        if "compile_s" in notes:
            lines.append(f"- {key}: torch.compile took {notes['compile_s']} s (forward and backward graphs; less "
                         "with a warm inductor cache).")

    for setting in args.settings:
        qm9 = setting != "nbody"
        radius = {"qm9_2A": 2.0, "qm9_5A": 5.0}.get(setting)
        compile_here = args.compile and (not qm9 or args.compile_qm9)
        for part in args.parts:
            if part == "layer" and not qm9:
                continue
            # Each case compiles afresh with static shapes (another batch size would otherwise
            # make dynamo recompile with dynamic shapes).
            torch._dynamo.reset()
            n_rounds = 2 if args.quick else rounds[(setting, part)]
            if part == "segnn" and not qm9:
                run_case("nbody SEGNN", segnn_nbody(device, compile_here, where), n_rounds, inner=2)
            elif part == "segnn":
                case = segnn_qm9_model(radius, device, compile_here, where, args.qm9_channels, args.qm9_layers)
                # No warm-up round at 5 Å: a step is many seconds, first-call overheads are noise.
                run_case(f"{setting} SEGNN", case, n_rounds, warmup=0 if radius > 3 else 1)
            elif part == "layer":
                run_case(f"{setting} layer", segnn_qm9_layer(radius, device, compile_here, where), n_rounds,
                         warmup=1)
            elif part == "tfn":
                case = tfn_qm9(radius, device, compile_here, where) if qm9 else tfn_nbody(device, compile_here,
                                                                                        where)
                run_case(f"{setting} TFN", case, n_rounds, inner=1 if qm9 else 2, warmup=1 if qm9 else 2)
            else:
                tp_ms, tp_notes = tensor_product_paths(setting, scale * n_rounds, device, compile_here)
                tp_label = (f"{setting}: first message tensor product, {tp_notes['edges']} rows, "
                            f"{tp_notes['irreps_in']} x attr -> {tp_notes['irreps_out']}, {tp_notes['weights']} "
                            f"weights, {where}")
                print(tp_label, flush=True)
                for (model, metric), value in tp_ms.items():
                    report(model, tp_label, metric, value, "ms")
                ref = "original: e3nn FullyConnectedTP + rescale"
                speedups(tp_ms, tp_label, ref, ["forward", "forward+backward"])
                speedups({k: v for k, v in tp_ms.items() if k[0] in (DEFAULT_TP, UNMERGED_TP)}, tp_label,
                         UNMERGED_TP, ["forward", "forward+backward"])
                if "compile_s" in tp_notes:
                    lines.append(f"- {setting} tensor product: torch.compile took {tp_notes['compile_s']} s.")

    timing = (f"on `{torch.cuda.get_device_name(device)}` with `torch.cuda.synchronize()` around every timing"
              if cuda else f"on a shared CPU machine, `torch.set_num_threads({args.threads})`")
    if not memory:
        mem = "Peak memory was not measured (`--no-memory`, or this OS cannot reset a process's peak RSS)."
    elif cuda:
        mem = ("Peak memory of a train step: `torch.cuda.max_memory_allocated()` over one more train step (after "
               "`reset_peak_memory_stats`) minus `torch.cuda.memory_allocated()` before it.")
    else:
        mem = ("Peak memory of a train step (CPU): after the timed rounds, one more train step of each "
               "implementation in the benchmark process: free heap pages are handed back to the OS "
               "(`malloc_trim(0)`), the peak RSS is reset (`echo 5 > /proc/self/clear_refs`), and the peak RSS "
               "after the step (`VmHWM`) minus the RSS before it (`VmRSS`) is reported. It is the step's "
               "working memory (activations saved for backward, gradients' temporaries); parameters, inputs, "
               "gradients and Adam state already exist from earlier steps and are not counted.")
    notes = "\n".join([
        "Same weights and inputs for equigraph and the original SEGNN code; outputs are checked to agree (float32, "
        f"relative {TOL:g}) before timing. Speed-ups are the original's median time divided by equigraph's (above "
        f"1: equigraph faster). Medians over interleaved rounds {timing}. Train step = zero_grad, forward, loss, "
        "backward, plain `Adam` step. The original code is re-implemented in "
        "`benchmarks/reference/segnn_original.py` (credited there). Issue anchor: the original code's N-body "
        "train step took 178.6 ms on this machine kind (1 thread).",
        "",
        "TFN rows are absolute: there is no original TFN code here (the EGNN paper ran TFN through the "
        "SE(3)-Transformer code), so TFN has no speed-up row. The TFN models are `equigraph.models.TFN` on the "
        "same batches (N-body: `configs/nbody_tfn.yaml`; QM9-like: the settings in the row labels), reading "
        "`data.edge_index` of the batch; compiled TFN numbers check against eager TFN.",
        "",
        "torch.compile: the N-body SEGNN network and the single QM9 layer are compiled whole; the 7-layer QM9 "
        "network and TFN regionally (each SEGNN layer, each TFN convolution and gate compiled on its own; the "
        "embedding, pooling and input checks stay eager). e3nn generates a new module class per tensor product, "
        "so each block is traced separately (dynamo's recompile limit is raised to fit them all; at the default "
        "of 8 the later blocks silently stay eager), and the inductor cache compiles the repeats cheaply. "
        "Compile times are one-off and not in the medians.",
        "",
        mem,
        "",
        "Tensor-product paths: equigraph's default `O3TensorProduct` runs the product with the equal irreps of "
        "its input merged into one block each (SEGNN's message input `x_i + x_j + extra` holds every irrep "
        "twice: 29 paths become 13 at QM9's irreps; an exact gather of input columns and weights, the state "
        "dict keeps the unmerged layout). Beside it: the same layer through its unmerged e3nn tensor product "
        "(`equigraph before`, the default until the merge; one more speed-up row compares the two), and e3nn's "
        "own code-generation options on the unmerged instructions and weights (`_specialized_code`, "
        "`_optimize_einsums` of `e3nn.o3.TensorProduct`); all agree with the original to the tolerance above. "
        "The SEGNN network and layer rows use the default (merged) path.",
        "",
        *lines,
    ])
    path = _results.write(args.name, rows, notes)
    print(path)


if __name__ == "__main__":
    main()
