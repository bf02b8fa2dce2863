"""CPU speed of equigraph's steerable layers (SEGNNConv, O3TensorProduct) against a
re-implementation of the original SEGNN code, on the same weights and inputs (outputs
checked to agree first), one thread, medians of interleaved rounds.

Settings (SEGNN's own configurations, ``--subspace_type=weightbalanced``):

- ``nbody``: 100 systems x 5 particles, fully connected (2,000 edges); hidden irreps
  ``WeightBalancedIrreps(64, l<=1)`` = 32x0e+32x1o, attributes l <= 1, 4 layers, no norm,
  input ``2x1o+1x0e``, output ``1x1o``, extra message features ``2x0e`` (|r_ij|, q_i q_j).
  The whole network (embedding, 4 layers, 2 output layers): forward and a train step
  (zero_grad, forward, MSE on positions, backward, Adam step). Issue anchor: the original
  code's train step, 178.6 ms on this machine kind (1 thread).
- ``qm9_2A`` / ``qm9_5A``: 96 molecule-like point clouds of 18 atoms (bonds 1.0-1.55 Å,
  non-bonded pairs >= 1.75 Å), radius graph 2 Å / 5 Å; hidden ``WeightBalancedIrreps(128,
  l<=3, lmax=2)`` = 36x0e+36x1o+36x2e, attributes l <= 3, instance norm, extra ``1x0e``
  (|r_ij|^2). One message-passing layer (a 7-layer network is ~7x that), forward and a
  train step on the layer.

Also the tensor-product code paths on the first message tensor product of each setting
(the largest): e3nn's ``FullyConnectedTensorProduct`` with SEGNN's rescale (the original),
e3nn's ``TensorProduct`` with explicit ``uvw`` instructions and the rescale folded into its
path normalization (equigraph's ``O3TensorProduct``), and ``torch.compile`` of the latter
(N-body only by default: compiling the QM9 layers takes several minutes on this CPU).

    python benchmarks/steerable_speed.py            # a few minutes
    python benchmarks/steerable_speed.py --quick    # fewer rounds
"""
from __future__ import annotations

import argparse
import re
import statistics
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
from benchmarks.reference import segnn_original as orig  # noqa: E402
from equigraph.nn import edge_vec  # noqa: E402
from equigraph.nn.conv.segnn import SEGNNConv  # noqa: E402
from equigraph.nn.steerable import (  # noqa: E402
    O3TensorProduct, O3TensorProductGate, SteerableAttributes, WeightBalancedIrreps,
)

NAME = "steerable_speed"
TOL = 1e-4  # float32: relative agreement required before timing


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
    return dict(pos=pos, x=x, edge_index=edge_index, batch=batch, vec=vec, extra=extra, target=target,
                num_graphs=graphs)


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


def qm9_batch(radius, seed=0):
    mols = molecules(seed=seed)
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

    def __init__(self, irreps_in, irreps_out):
        super().__init__()
        self.tp = O3TensorProduct(irreps_in, irreps_out)

    def forward(self, x):
        return torch.nn.functional.silu(self.tp(x))


class SEGNNNet(nn.Module):
    def __init__(self, input_irreps, hidden, output, attr, num_layers, extra, norm=None, task="node"):
        super().__init__()
        self.task = task
        self.embedding_layer = O3TensorProduct(input_irreps, hidden, attr)
        self.layers = nn.ModuleList([SEGNNConv(hidden, hidden, hidden, attr, attr, extra, norm=norm)
                                     for _ in range(num_layers)])
        self.pre_pool1 = O3TensorProductGate(hidden, hidden, attr)
        if task == "graph":
            pooled = (o3.Irreps(output) * hidden.num_irreps).simplify().sort().irreps
            self.pre_pool2 = O3TensorProduct(hidden, pooled, attr)
            self.post_pool1 = _TPSiLU(pooled, pooled) if pooled.lmax == 0 else O3TensorProductGate(pooled, pooled)
            self.post_pool2 = O3TensorProduct(pooled, output)
        else:
            self.pre_pool2 = O3TensorProduct(hidden, output, attr)

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
        raise RuntimeError(f"{name}: equigraph and the original disagree by {err:.3g} (scale {scale:.3g})")
    return err


# ---------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------
def interleaved(jobs, rounds, inner=1, warmup=2):
    for job in jobs.values():
        for _ in range(warmup):
            job()
    times = {key: [] for key in jobs}
    for _ in range(rounds):
        for key, job in jobs.items():
            t = time.perf_counter()
            for _ in range(inner):
                job()
            times[key].append((time.perf_counter() - t) / inner * 1e3)
    return {key: statistics.median(v) for key, v in times.items()}


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


def nbody(rounds, compile_model):
    d = nbody_batch()
    attrs = SteerableAttributes(lmax=1)
    edge_attr, node_attr = attrs(d["vec"], d["edge_index"], d["x"].size(0))
    hidden = WeightBalancedIrreps(64, attrs.irreps_out)
    args = (o3.Irreps("2x1o+1x0e"), hidden, o3.Irreps("1x1o"), attrs.irreps_out, 4, o3.Irreps("2x0e"))
    torch.manual_seed(0)
    ours = SEGNNNet(*args)
    original = orig.SEGNN(args[0], hidden, args[2], args[3], args[3], num_layers=4, norm=None, task="node",
                          additional_message_irreps=args[5])
    copy_weights(ours, original)
    graph = Data(x=d["x"], edge_index=d["edge_index"], edge_attr=edge_attr, node_attr=node_attr.clone(),
                 additional_message_features=d["extra"], batch=d["batch"])
    run_ours = lambda: ours(d["x"], d["edge_index"], edge_attr, node_attr, d["extra"], d["batch"])  # noqa: E731
    run_orig = lambda: original(graph)  # noqa: E731
    with torch.no_grad():
        err = _check("nbody network", run_ours(), run_orig())
    loss = lambda out: torch.nn.functional.mse_loss(d["pos"] + out, d["target"])  # noqa: E731
    impls = {"original SEGNN": (original, run_orig), "equigraph SEGNNConv": (ours, run_ours)}
    notes = {"edges": d["edge_index"].size(1), "nodes": d["x"].size(0), "hidden": str(hidden),
             "max_abs_diff": err}
    if compile_model:
        compiled = torch.compile(ours)
        t = time.perf_counter()
        for _ in range(2):
            loss(compiled(d["x"], d["edge_index"], edge_attr, node_attr, d["extra"], d["batch"])).backward()
        with torch.no_grad():
            err_c = _check("compiled nbody network",
                           compiled(d["x"], d["edge_index"], edge_attr, node_attr, d["extra"], d["batch"]),
                           run_orig())
        notes["compile_s"] = round(time.perf_counter() - t, 1)
        notes["max_abs_diff_compiled"] = err_c
        ours.zero_grad()
        impls["equigraph SEGNNConv + torch.compile"] = (
            ours, lambda: compiled(d["x"], d["edge_index"], edge_attr, node_attr, d["extra"], d["batch"]))
    jobs = {}
    for name, (model, fn) in impls.items():
        jobs[(name, "forward")] = _forward(fn)
        jobs[(name, "train step")] = _train(fn, model, loss)
    return interleaved(jobs, rounds, inner=2), notes


def qm9_layer(radius, rounds, compile_layer=False):
    d = qm9_batch(radius)
    attrs = SteerableAttributes(lmax=3)
    n = d["pos"].size(0)
    edge_attr, node_attr = attrs(d["vec"], d["edge_index"], n)
    hidden = WeightBalancedIrreps(128, attrs.irreps_out, lmax=2)
    torch.manual_seed(0)
    ours = SEGNNConv(hidden, hidden, hidden, attrs.irreps_out, attrs.irreps_out, "1x0e", norm="instance")
    original = orig.SEGNNLayer(hidden, hidden, hidden, attrs.irreps_out, attrs.irreps_out, norm="instance",
                               additional_message_irreps=o3.Irreps("1x0e"))
    copy_weights(ours, original)
    x = torch.randn(n, hidden.dim, generator=torch.Generator().manual_seed(1))
    # The original's update adds the residual in place into its input: give it a copy.
    run_ours = lambda: ours(x, d["edge_index"], edge_attr, node_attr, d["extra"], d["batch"], )  # noqa: E731
    run_orig = lambda: original(x.clone(), d["edge_index"], edge_attr, node_attr, d["batch"], d["extra"])  # noqa: E731
    with torch.no_grad():
        err = _check(f"qm9 {radius} Å layer", run_ours(), run_orig())
    loss = lambda out: out.square().mean()  # noqa: E731
    impls = {"original SEGNNLayer": (original, run_orig), "equigraph SEGNNConv": (ours, run_ours)}
    notes = {"edges": d["edge_index"].size(1), "nodes": n, "hidden": str(hidden), "max_abs_diff": err}
    if compile_layer:
        compiled = torch.compile(ours)
        run_compiled = lambda: compiled(x, d["edge_index"], edge_attr, node_attr, d["extra"], d["batch"])  # noqa: E731
        t = time.perf_counter()
        loss(run_compiled()).backward()
        with torch.no_grad():
            notes["max_abs_diff_compiled"] = _check(f"compiled qm9 {radius} Å layer", run_compiled(), run_orig())
        notes["compile_s"] = round(time.perf_counter() - t, 1)
        ours.zero_grad()
        impls["equigraph SEGNNConv + torch.compile"] = (ours, run_compiled)
    jobs = {}
    for name, (model, fn) in impls.items():
        jobs[(name, "forward")] = _forward(fn)
        jobs[(name, "train step")] = _train(fn, model, loss)
    return interleaved(jobs, rounds, warmup=1), notes


def tensor_product_paths(setting, rounds, compile_tp):
    """The first message tensor product of ``setting``, three e3nn code paths."""
    if setting == "nbody":
        attr, hidden, extra, edges = o3.Irreps.spherical_harmonics(1), None, o3.Irreps("2x0e"), 2000
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
    g = torch.Generator().manual_seed(2)
    x = torch.randn(edges, irreps_in.dim, generator=g)
    a = o3.spherical_harmonics(attr, torch.randn(edges, 3, generator=g), True, normalization="component")
    xg = x.clone().requires_grad_()
    with torch.no_grad():
        err = _check(f"{setting} tensor product", ours(x, a), original(x, a))
    paths = {"original: e3nn FullyConnectedTP + rescale": original,
             "equigraph: e3nn TensorProduct, folded rescale": ours}
    notes = {"edges": edges, "irreps_in": str(irreps_in), "irreps_out": str(ours.irreps_out),
             "weights": ours.weight_numel, "max_abs_diff": err}
    if compile_tp:
        compiled = torch.compile(ours)
        t = time.perf_counter()
        compiled(xg, a).sum().backward()
        with torch.no_grad():
            notes["max_abs_diff_compiled"] = _check(f"compiled {setting} tensor product", compiled(x, a),
                                                    original(x, a))
        notes["compile_s"] = round(time.perf_counter() - t, 1)
        paths["equigraph + torch.compile"] = compiled
    jobs = {}
    for name, tp in paths.items():
        jobs[(name, "forward")] = _forward(lambda tp=tp: tp(x, a))
        jobs[(name, "forward+backward")] = lambda tp=tp: tp(xg, a).sum().backward()
    return interleaved(jobs, rounds, warmup=2 if setting == "nbody" else 1), notes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--compile-qm9", action="store_true",
                        help="also compile the QM9 layers and tensor products (minutes of compilation)")
    parser.add_argument("--name", default=NAME, help="results/NAME.json and .md")
    parser.add_argument("--settings", nargs="+", default=["nbody", "qm9_2A", "qm9_5A"],
                        choices=["nbody", "qm9_2A", "qm9_5A"])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows, lines = [], []

    def report(model, label, metric, value, unit):
        print(f"  {model:75s} {metric:16s} {value:10.3g} {unit}", flush=True)
        rows.append(_results.row(model, label, metric, value if unit == "abs" else round(value, 3), unit))

    def speedups(ms, label, reference, others, metrics):
        for other in dict.fromkeys(others):
            for metric in metrics:
                if (other, metric) in ms:
                    report(f"speed-up: {other} vs {reference}", label, metric,
                           ms[(reference, metric)] / ms[(other, metric)], "x")

    for setting in args.settings:
        if setting == "nbody":
            ms, notes = nbody(5 if args.quick else 15, args.compile)
            label = (f"nbody: 100 x 5 nodes, {notes['edges']} edges, hidden {notes['hidden']}, attr l<=1, "
                     "4 layers + embedding/output, 1 thread")
            reference = "original SEGNN"
        else:
            radius = 2.0 if setting == "qm9_2A" else 5.0
            ms, notes = qm9_layer(radius, 2 if args.quick else (5 if radius < 3 else 2),
                                  args.compile and args.compile_qm9)
            label = (f"{setting}: 96 x 18 atoms, radius {radius:g} Å, {notes['edges']} edges, hidden "
                     f"{notes['hidden']}, attr l<=3, instance norm, one layer, 1 thread")
            reference = "original SEGNNLayer"
        print(label, notes, flush=True)
        for (model, metric), value in ms.items():
            report(model, label, metric, value, "ms")
        report("max |equigraph - original| (same weights)", label, "output", notes["max_abs_diff"], "abs")
        speedups(ms, label, reference, [m for m, _ in ms if m != reference], ["forward", "train step"])
        if "compile_s" in notes:
            lines.append(f"- {setting}: torch.compile took {notes['compile_s']} s "
                         f"(forward and backward graphs; less with a warm inductor cache).")

        tp_rounds = 2 if args.quick or setting == "qm9_5A" else (15 if setting == "nbody" else 5)
        tp_ms, tp_notes = tensor_product_paths(setting, tp_rounds,
                                               args.compile and (setting == "nbody" or args.compile_qm9))
        tp_label = (f"{setting}: first message tensor product, {tp_notes['edges']} rows, "
                    f"{tp_notes['irreps_in']} x attr -> {tp_notes['irreps_out']}, {tp_notes['weights']} weights")
        print(tp_label, flush=True)
        for (model, metric), value in tp_ms.items():
            report(model, tp_label, metric, value, "ms")
        ref = "original: e3nn FullyConnectedTP + rescale"
        speedups(tp_ms, tp_label, ref, [m for m, _ in tp_ms if m != ref], ["forward", "forward+backward"])
        if "compile_s" in tp_notes:
            lines.append(f"- {setting} tensor product: torch.compile took {tp_notes['compile_s']} s.")

    notes = "\n".join([
        "Same weights and inputs for both implementations; outputs are checked to agree (float32, relative "
        f"{TOL:g}) before timing. Speed-ups are the original's median time divided by equigraph's (above 1: "
        "equigraph faster). Medians over interleaved rounds on a shared CPU machine, `torch.set_num_threads(1)`. "
        "Train step = zero_grad, forward, loss, backward, plain `Adam` step. The original code is re-implemented "
        "in `benchmarks/reference/segnn_original.py` (credited there). Issue anchor: the original code's N-body "
        "train step took 178.6 ms on this machine kind (1 thread).",
        "",
        *lines,
    ])
    path = _results.write(args.name, rows, notes)
    print(path)


if __name__ == "__main__":
    main()
