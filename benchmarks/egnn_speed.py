"""CPU speed of equigraph's EGNN against the original EGNN code (and a dense all-pairs
EGNN) on the same weights and inputs: forward, forward + backward, and a full train step
(zero_grad, forward, MSE on positions, backward, Adam step).

Two batches, both EGNN-vel (the architecture of ``benchmarks/reference/egnn_original.py``):

- ``nbody``: 100 random 5-particle systems, fully connected (20 edges each), hidden 64,
  4 layers, edge input ``[q_i q_j, |x_i - x_j|^2]`` (the N-body benchmark's shapes);
- ``qm9``: 96 random 18-atom molecules (about 1.5 Å spread), radius graph 5 Å, hidden 128,
  7 layers, same inputs: QM9-sized graphs through the same reference.

Every implementation is timed once per round and the rounds are interleaved, so load
changes on a shared machine hit all of them alike; the median over rounds is reported.
Optimisers: the original code's plain ``torch.optim.Adam`` (single-tensor on CPU, as in its
repository) and, for equigraph, also ``Adam(fused=True)``, which equigraph's trainers use.
The helpers (batch, models, jobs, interleaved timing) are shared with
``benchmarks/gpu_speed.py``, which runs the same comparison on a GPU.

    python benchmarks/egnn_speed.py                 # both batches, 1 and 2 threads
    python benchmarks/egnn_speed.py --quick         # fewer repeats
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch_geometric.data import Data

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _results  # noqa: E402
from benchmarks.reference.egnn_dense import DenseEGNNVel  # noqa: E402
from benchmarks.reference.egnn_original import EGNN_vel  # noqa: E402
from equigraph.data import keys as K  # noqa: E402
from equigraph.models import EGNN  # noqa: E402

NAME = "egnn_speed"
SETTINGS = {
    "nbody": dict(graphs=100, nodes=5, hidden=64, layers=4, cutoff=None, spread=1.0),
    "qm9": dict(graphs=96, nodes=18, hidden=128, layers=7, cutoff=5.0, spread=1.5),
}
ORIGINAL = "original E_GCL_vel"
#: Speed-up rows: (metric, the original's job, equigraph's job).
SPEEDUP_PAIRS = (
    ("forward", "forward", "forward"),
    ("forward+backward", "forward+backward", "forward+backward"),
    ("train step, both plain Adam", "train step, Adam", "train step, Adam"),
    ("train step, own optimiser (orig. Adam, ours fused Adam)", "train step, Adam", "train step, Adam fused"),
)


def make_batch(graphs, nodes, cutoff, spread, seed=0):
    """Random systems with the N-body inputs: ``x`` the speed, ``edge_attr`` ``[q_i q_j,
    |x_i - x_j|^2]``; fully connected without ``cutoff``, else a radius graph."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(graphs, nodes, 3, generator=g) * spread
    vel = torch.randn(graphs, nodes, 3, generator=g)
    charge = torch.randint(0, 2, (graphs, nodes), generator=g).float() * 2 - 1
    dist = torch.cdist(pos, pos)
    adj = ~torch.eye(nodes, dtype=torch.bool).expand(graphs, -1, -1)
    if cutoff is not None:
        adj = adj & (dist < cutoff)
    b, i, j = adj.nonzero(as_tuple=True)  # i centre, j neighbour
    edge_index = torch.stack([b * nodes + j, b * nodes + i])
    pos, vel, charge = pos.reshape(-1, 3), vel.reshape(-1, 3), charge.reshape(-1)
    src, dst = edge_index
    sq = (pos[src] - pos[dst]).pow(2).sum(-1, keepdim=True)
    edge_attr = torch.cat([(charge[src] * charge[dst]).unsqueeze(-1), sq], dim=-1)
    data = Data(**{K.POS: pos, K.VEL: vel, K.X: vel.norm(dim=-1, keepdim=True), K.EDGE_INDEX: edge_index,
                   K.EDGE_ATTR: edge_attr, K.BATCH: torch.arange(graphs).repeat_interleave(nodes)})
    target = pos + 0.1 * torch.randn(pos.shape, generator=g)
    return data, target, adj


def check_agree(impls, ref_name, tol=1e-4, relative=False):
    """Every implementation's no-grad output equals ``ref_name``'s to ``tol`` (absolute, or
    relative to the reference's largest magnitude); returns the reference output."""
    with torch.no_grad():
        ref = impls[ref_name][1]()
        scale = ref.abs().max().item() if relative else 1.0
        for name, (_, fn) in impls.items():
            err = (fn() - ref).abs().max().item() / max(scale, 1e-30)
            if not err <= tol:
                kind = "relative " if relative else ""
                raise RuntimeError(f"{name} disagrees with {ref_name} by {kind}{err:.3g} on the same weights")
    return ref


def compile_impl(model, call, loss_fn, ref, tol=1e-4):
    """``torch.compile(model)``, warmed up (forward and backward graphs, a no-grad forward)
    and checked against the eager output ``ref``; returns ``(fn, seconds to compile)``.
    ``call(module)`` runs a module on the batch, ``loss_fn(output)`` is the training loss."""
    compiled = torch.compile(model)
    t = time.perf_counter()
    for _ in range(3):
        loss_fn(call(compiled)).backward()
    with torch.no_grad():
        out = call(compiled)
        err = ((out - ref).abs().max() / ref.abs().max().clamp(min=1.0)).item()
    if not err <= tol:
        raise RuntimeError(f"the compiled EGNN disagrees with eager by {err:.3g}")
    model.zero_grad()
    return (lambda: call(compiled)), round(time.perf_counter() - t, 1)


def build_egnn_vel(cfg, compile_model=False, device="cpu", dense=True):
    """equigraph's EGNN-vel, the original ``EGNN_vel`` and (fully connected graphs, with
    ``dense``) the dense all-pairs EGNN on one batch of ``cfg`` (a :data:`SETTINGS` entry),
    with the same weights, checked to agree. Returns ``(impls, target, notes)``, ``impls``
    mapping a name to ``(module, forward callable)``."""
    data, target, adj = make_batch(cfg["graphs"], cfg["nodes"], cfg["cutoff"], cfg["spread"])
    data, target = data.to(device), target.to(device)
    torch.manual_seed(0)
    # No envelope: the original's messages are not multiplied by a cutoff function (the
    # batch carries its own edges, so the model's interaction graph is not used).
    ours = EGNN(hidden_channels=cfg["hidden"], num_layers=cfg["layers"], in_channels=1, edge_dim=2, use_velocity=True,
                envelope=False)
    original = EGNN_vel(in_node_nf=1, in_edge_nf=2, hidden_nf=cfg["hidden"], n_layers=cfg["layers"], recurrent=True)
    state = {k.replace("convs.", "layers.").replace("vel_mlp", "coord_mlp_vel"): v for k, v in ours.state_dict().items()}
    original.load_state_dict(state)
    ours.to(device), original.to(device)
    rows, cols = data[K.EDGE_INDEX][1], data[K.EDGE_INDEX][0]  # original: row = centre
    impls = {
        "equigraph EGNN": (ours, lambda: ours(data)[K.POS]),
        ORIGINAL: (original, lambda: original(data[K.X], data[K.POS], (rows, cols), data[K.VEL],
                                              data[K.EDGE_ATTR])),
    }
    if dense and cfg["cutoff"] is None:  # dense all-pairs needs equal-size, fully connected graphs
        b, n = cfg["graphs"], cfg["nodes"]
        dense_model = DenseEGNNVel(in_node_nf=1, in_edge_nf=2, hidden_nf=cfg["hidden"], n_layers=cfg["layers"])
        dense_model.load_state_dict(state)
        dense_model.to(device)
        dense_attr = torch.zeros(b, n, n, 2, device=device)
        ei = data[K.EDGE_INDEX]
        dense_attr[ei[1] // n, ei[1] % n, ei[0] % n] = data[K.EDGE_ATTR]
        impls["dense all-pairs"] = (dense_model, lambda: dense_model(
            data[K.X].view(b, n, 1), data[K.POS].view(b, n, 3), data[K.VEL].view(b, n, 3), dense_attr).reshape(-1, 3))
    ref = check_agree(impls, "equigraph EGNN")
    notes = {"edges": data[K.EDGE_INDEX].size(1), "nodes": data[K.POS].size(0)}
    if compile_model:
        fn, notes["compile_s"] = compile_impl(ours, lambda m: m(data)[K.POS],
                                              lambda out: torch.nn.functional.mse_loss(out, target), ref)
        impls["equigraph EGNN + compile"] = (ours, fn)
    return impls, target, notes


def build(setting, compile_model):
    return build_egnn_vel(SETTINGS[setting], compile_model)


def make_jobs(impls, loss_fn, backward=True):
    """Jobs ``{(name, mode): callable}``: ``forward`` (no grad), ``forward+backward`` (with
    ``backward``) and ``train step, Adam`` for every implementation, plus ``train step, Adam
    fused`` for equigraph's. ``loss_fn(output)`` is the training loss."""
    optim = {}
    for name, (model, _) in impls.items():
        optim[(name, "Adam")] = torch.optim.Adam(model.parameters(), lr=1e-12)
        if name.startswith("equigraph"):
            optim[(name, "Adam fused")] = torch.optim.Adam(model.parameters(), lr=1e-12, fused=True)

    def fwd(fn):
        with torch.no_grad():
            fn()

    def train(fn, opt):
        opt.zero_grad()
        loss_fn(fn()).backward()
        opt.step()

    jobs = {}
    for name, (model, fn) in impls.items():
        jobs[(name, "forward")] = lambda fn=fn: fwd(fn)
        if backward:
            jobs[(name, "forward+backward")] = lambda fn=fn, m=model: (m.zero_grad(), loss_fn(fn()).backward())
        for (oname, okind), opt in optim.items():
            if oname == name:
                jobs[(name, f"train step, {okind}")] = lambda fn=fn, opt=opt: train(fn, opt)
    return jobs


def resolve_device(name: str) -> torch.device:
    """``--device``: ``auto`` (CUDA when available), ``cpu`` or ``cuda`` (an error without one)."""
    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda, got {name!r}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA device on this machine")
    return torch.device(name)


def time_jobs(jobs, repeats, inner, device="cpu", warmup=3):
    """Median ms per call of every job over ``repeats`` interleaved rounds of ``inner``
    calls each. On CUDA the device is synchronised around every timing, and the second
    return value maps each job to its peak allocated memory in MiB (else it is empty)."""
    cuda = torch.device(device).type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for job in jobs.values():
        for _ in range(warmup):
            job()
    peaks = {}
    if cuda:
        for key, job in jobs.items():
            sync()
            torch.cuda.reset_peak_memory_stats()
            job()
            sync()
            peaks[key] = torch.cuda.max_memory_allocated() / 2**20
    times = {key: [] for key in jobs}
    for _ in range(repeats):
        for key, job in jobs.items():
            sync()
            t = time.perf_counter()
            for _ in range(inner):
                job()
            sync()
            times[key].append((time.perf_counter() - t) / inner * 1e3)
    return {key: statistics.median(v) for key, v in times.items()}, peaks


def speedups(ms, original, mines, pairs=SPEEDUP_PAIRS):
    """``[(mine, metric, original / mine)]`` for every pair whose jobs were both timed."""
    out = []
    for mine in mines:
        for metric, key_o, key_m in pairs:
            if (original, key_o) in ms and (mine, key_m) in ms:
                out.append((mine, metric, ms[(original, key_o)] / ms[(mine, key_m)]))
    return out


def time_setting(setting, threads, repeats, inner, compile_model):
    torch.set_num_threads(threads)
    impls, target, notes = build(setting, compile_model)
    jobs = make_jobs(impls, lambda out: torch.nn.functional.mse_loss(out, target))
    return time_jobs(jobs, repeats, inner)[0], notes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    args = parser.parse_args(argv)
    rows, lines = [], []
    for setting in args.settings:
        big = setting == "qm9"
        repeats = (3 if args.quick else 9) if big else (5 if args.quick else 21)
        inner = 1 if big else 5
        for threads in args.threads:
            ms, notes = time_setting(setting, threads, repeats, inner, args.compile)
            cfg = SETTINGS[setting]
            label = (f"{setting}: {cfg['graphs']} x {cfg['nodes']} nodes, {notes['edges']} edges, hidden "
                     f"{cfg['hidden']}, {cfg['layers']} layers, {threads} thread(s)")
            print(label, notes, flush=True)
            for (name, mode), value in ms.items():
                print(f"  {name:28s} {mode:26s} {value:9.2f} ms", flush=True)
                rows.append(_results.row(name, label, mode, round(value, 3), "ms"))
            for mine, metric, ratio in speedups(ms, ORIGINAL, ("equigraph EGNN", "equigraph EGNN + compile")):
                rows.append(_results.row(f"speed-up: {mine} vs original", label, metric, round(ratio, 3), "x"))
                print(f"  speed-up {mine:26s} {metric:55s} {ratio:6.2f}x", flush=True)
            if "compile_s" in notes:
                lines.append(f"- {label}: torch.compile took {notes['compile_s']} s (forward + backward graphs).")
    notes = "\n".join([
        "Ratios are the original code's median time divided by equigraph's (above 1: equigraph faster). "
        "Same weights and inputs for all implementations (outputs checked to agree to 1e-4). "
        "The original uses plain `torch.optim.Adam` as in its repository; equigraph's trainers use "
        "`Adam(fused=True)`. Medians over interleaved rounds on a shared CPU machine.",
        "",
        *lines,
    ])
    path = _results.write(NAME, rows, notes)
    print(path)


if __name__ == "__main__":
    main()
