"""The sum over neighbours of a message-passing layer, three ways, forward + backward, on the
edge and node counts of equigraph's benchmark batches (issue 12, "sorted-by-centre edges with
segment reductions"):

- ``scatter``: ``torch_geometric.utils.scatter(reduce="sum")`` on edges in any order (what
  every equigraph layer uses; its backward is a ``gather``);
- ``index_add``: ``Tensor.index_add_`` (backward: ``index_select``);
- ``segment_reduce``: ``torch.segment_reduce`` over edges sorted by centre (CSR lengths),
  the segment reduction of the issue's directions.

Each is checked equal to the others before timing; timings are medians of interleaved
rounds (CUDA: synchronised around each timing).

    python benchmarks/aggregation.py --device cpu --threads 1
    python benchmarks/aggregation.py --device cuda
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch_geometric.utils import scatter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _results  # noqa: E402
from benchmarks.egnn_speed import resolve_device, time_jobs  # noqa: E402

NAME = "aggregation"
#: (label, nodes, edges, channels): the counts of N-body 100 x 5 fully connected (message +
#: coordinate columns of EGNN-vel) and of QM9 96 molecules with the 5 Å graph (hidden 128);
#: the centre indices are random (sorted), not those graphs' own.
SIZES = [("N-body 100 x 5 sizes (EGNN-vel message), random sorted centres", 500, 2000, 67),
         ("QM9 96-molecule sizes (5 Å graph, hidden 128), random sorted centres", 1727, 26812, 128)]
TINY = [("tiny", 20, 60, 4)]


def reductions(index: torch.Tensor, num_nodes: int):
    """``{name: fn(src) -> [num_nodes, C]}``; ``index`` must be sorted (segment_reduce)."""
    lengths = torch.bincount(index, minlength=num_nodes)
    return {
        "scatter": lambda src: scatter(src, index, 0, dim_size=num_nodes, reduce="sum"),
        "index_add": lambda src: src.new_zeros(num_nodes, src.size(1)).index_add_(0, index, src),
        "segment_reduce": lambda src: torch.segment_reduce(src, "sum", lengths=lengths, axis=0, unsafe=True),
    }


def run(nodes: int, edges: int, channels: int, device, repeats: int, inner: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    index = torch.sort(torch.randint(0, nodes, (edges,), generator=gen)).values.to(device)
    src = torch.randn(edges, channels, generator=gen).to(device).requires_grad_()
    grad = torch.randn(nodes, channels, generator=gen).to(device)
    fns = reductions(index, nodes)
    ref_out, ref_grad = None, None
    for name, fn in fns.items():
        out = fn(src)
        (g,) = torch.autograd.grad(out, src, grad)
        if ref_out is None:
            ref_out, ref_grad = out.detach(), g
        elif not (torch.allclose(out, ref_out, atol=1e-4) and torch.allclose(g, ref_grad, atol=1e-4)):
            raise RuntimeError(f"{name} disagrees with scatter")
    jobs = {name: (lambda fn=fn: torch.autograd.grad(fn(src), src, grad)) for name, fn in fns.items()}
    ms, _ = time_jobs(jobs, repeats, inner, device)
    return {name: value * 1e3 for name, value in ms.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few rounds (the smoke test)")
    parser.add_argument("--name", default=NAME)
    args = parser.parse_args(argv)
    resolve_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    where = "CUDA" if args.device == "cuda" else f"CPU, {torch.get_num_threads()} thread(s)"
    rows = []
    for label, nodes, edges, channels in (TINY if args.quick else SIZES):
        repeats, inner = (3, 2) if args.quick else (15, 20)
        us = run(nodes, edges, channels, args.device, repeats, inner)
        setting = f"{label}: {edges} edges -> {nodes} nodes x {channels}, {where}"
        for name, value in us.items():
            rows.append(_results.row(name, setting, "forward + backward", round(value, 1), "us"))
            print(f"{setting:75s} {name:15s} {value:10.1f} us", flush=True)
        for name in ("index_add", "segment_reduce"):
            rows.append(_results.row(f"speed-up: {name} vs scatter", setting, "forward + backward",
                                     round(us["scatter"] / us[name], 3), "x"))
    notes = ("Forward and backward of the sum of `src [E, C]` over sorted centre indices into `[N, C]`, the same "
             "result for all three (checked). Speed-ups above 1 favour the alternative over PyG's `scatter`.")
    path = _results.write(args.name, rows, notes)
    print(path)
    return path


if __name__ == "__main__":
    main()
