"""k-nearest-neighbour graphs: :func:`equigraph.graph.knn_graph`'s backends against the
original all-pairs scan, scipy's ``cKDTree`` alone and the dense padded top-k of
:func:`equigraph.nn.frames.knn_index`.

Uniform random clouds in the unit cube, float32, one thread. Every timing is the median of
interleaved rounds (load changes on a shared machine hit every method alike). Before any
timing, the script checks that the ``dense``, ``kdtree``, ``auto`` (and, where it is run,
``brute``) backends return identical ``edge_index`` tensors.

* ``knn_graph auto/dense/kdtree/brute``: ``knn_graph(pos, k, batch, backend=...)``; ``brute``
  is the implementation before the dense and k-d tree backends (all pairs as index lists,
  capped by a sort).
* ``cKDTree alone``: building one scipy tree per graph and querying ``k + 1`` neighbours
  (float64 numpy in and out, no ``edge_index``): the floor of a k-d tree backend.
* ``nn.frames knn_index``: the dense padded top-k of the point-cloud backbones
  (``loop=True`` with ``k + 1``: the same neighbourhoods plus the point itself), no tie rule.

The ``dense / kdtree`` ratio per graph size is what sets ``KDTREE_MIN_NODES``
(:mod:`equigraph.graph.knn`)::

    python benchmarks/knn.py            # writes benchmarks/results/knn.{json,md}
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import _results  # noqa: E402
from equigraph.graph.knn import KDTREE_MIN_NODES, knn_graph  # noqa: E402
from equigraph.nn.frames.knn import knn_index  # noqa: E402

#: (graphs, nodes per graph, k, also time the original scan)
SETTINGS = [
    (64, 512, 20, True),   # a DGCNN / normal-estimation batch: the 13 s case of the issue
    (256, 64, 16, True),
    (1, 512, 20, True),
    (1, 1024, 20, False),
    (1, 2048, 20, False),
    (1, 4096, 20, True),
    (1, 16384, 20, False),
    (1, 65536, 20, False),
]
#: Largest graph the dense backend is timed on (above it only the k-d tree is practical).
DENSE_MAX = 16384


def _ckdtree(pos: np.ndarray, sizes: list[int], k: int):
    from scipy.spatial import cKDTree

    s = 0
    for n in sizes:
        pts = pos[s:s + n]
        cKDTree(pts).query(pts, k=min(k + 1, n))
        s += n


def methods(G: int, n: int, k: int, brute: bool):
    g = torch.Generator().manual_seed(G * 100003 + n)
    pos = torch.rand(G * n, 3, generator=g)
    batch = torch.arange(G).repeat_interleave(n)
    pos64 = pos.double().numpy()
    out = {"knn_graph auto": lambda: knn_graph(pos, k, batch),
           "knn_graph kdtree": lambda: knn_graph(pos, k, batch, backend="kdtree"),
           "cKDTree alone": lambda: _ckdtree(pos64, [n] * G, k)}
    if n <= DENSE_MAX:
        out["knn_graph dense"] = lambda: knn_graph(pos, k, batch, backend="dense")
        out["nn.frames knn_index"] = lambda: knn_index(pos, k + 1, batch, loop=True)
    if brute:
        out["knn_graph brute (old)"] = lambda: knn_graph(pos, k, batch, backend="brute")
    return pos, batch, out


def check_identical(pos, batch, k, brute: bool) -> bool:
    ref = knn_graph(pos, k, batch, backend="kdtree")
    others = ["auto"] + (["dense"] if pos.size(0) // max(int(batch.max()) + 1, 1) <= DENSE_MAX else []) \
        + (["brute"] if brute else [])
    return all(torch.equal(knn_graph(pos, k, batch, backend=b), ref) for b in others)


def time_setting(fns: dict, rounds: int) -> dict:
    for fn in fns.values():
        fn()  # warm-up
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def time_all(fns: dict, rounds: int, slow_rounds: int) -> dict:
    """The fast methods interleaved; the old scan on its own afterwards (its gigabytes of
    temporaries would leave the next method in a round cold pages)."""
    slow = {k: fns.pop(k) for k in list(fns) if k.endswith("(old)")}
    times = time_setting(fns, rounds)
    if slow:
        times.update(time_setting(slow, slow_rounds))
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows, ratio_lines = [], []
    for G, n, k, brute in SETTINGS:
        pos, batch, fns = methods(G, n, k, brute)
        same = check_identical(pos, batch, k, brute)
        if not same:
            raise SystemExit(f"{G} x {n}, k = {k}: the backends disagree")
        # the largest graphs and the slow scan get fewer rounds: their spread is small next to the gaps
        rounds = args.rounds if G * n * n <= (1 << 26) else max(3, args.rounds // 2)
        times = time_all(fns, rounds, slow_rounds=3)
        setting = f"{G} x {n} points, k = {k}"
        med = {name: statistics.median(v) for name, v in times.items()}
        for name, ms in med.items():
            rows.append(_results.row(name, setting, "time", round(ms, 2), "ms", rounds=len(times[name]),
                                     identical_edges=same if name.startswith("knn_graph") else ""))
            print(f"{setting:32s} {name:24s} {ms:10.2f} ms", flush=True)
        if "knn_graph dense" in med:
            ratio = med["knn_graph dense"] / med["knn_graph kdtree"]
            rows.append(_results.row("dense / kdtree", setting, "time ratio", round(ratio, 3), "x"))
            ratio_lines.append(f"{G} x {n}: {ratio:.2f}")
        if "knn_graph brute (old)" in med:
            rows.append(_results.row("speed-up: auto vs brute (old)", setting, "time ratio",
                                     round(med["knn_graph brute (old)"] / med["knn_graph auto"], 2), "x"))
    notes = "\n".join([
        "Uniform random float32 clouds in the unit cube, batches of equal graphs, "
        f"{torch.get_num_threads()} thread(s); median of interleaved rounds (`rounds`) after a warm-up, on a 2-core "
        "machine shared with other jobs (absolute times carry that load; ratios from one round-robin are "
        "fairer). `knn_graph brute (old)` is timed after the others, in rounds of its own. `identical_edges`: `dense`, `kdtree`, `auto` (and `brute` where timed) returned identical "
        "`edge_index` tensors for that input (checked before timing).",
        "",
        f"`auto` uses the k-d tree on CPU for graphs of more than {KDTREE_MIN_NODES} nodes, the dense scan "
        "otherwise. Dense / k-d tree time per setting: " + "; ".join(ratio_lines) + ".",
        "",
        "`cKDTree alone` is scipy's build and query with no edge list and no tie rule; `nn.frames knn_index` is "
        "the dense top-k of the point-cloud backbones (`k + 1` with the point itself, ties broken by "
        "`torch.topk`). `knn_graph brute (old)` is the previous implementation.",
    ])
    _results.write("knn", rows, notes)


if __name__ == "__main__":
    main()
