"""Cost of the coincident-atom check of the radius graphs (``min_distance``, on by default)
against the same search with the check off (``min_distance=0``), per backend.

    python benchmarks/coincidence_check.py

Writes ``results/coincidence_check.{json,md}``. Random points at 0.1 atoms/Å^3, cutoff 5 Å,
one thread, best of interleaved repeats.
"""
import time

import torch

from _results import row, write
from equigraph.graph import periodic_radius_graph, radius_graph


def cases():
    g = torch.Generator().manual_seed(0)
    n = 100_000
    box = (n / 0.1) ** (1 / 3)
    pos = torch.rand(n, 3, generator=g, dtype=torch.float64) * box
    cell, pbc = torch.eye(3, dtype=torch.float64) * box, torch.tensor([True] * 3)
    mpos = torch.rand(4096, 3, generator=g) * 7.0
    mbatch = torch.arange(4096) // 32
    return {
        ("vesin", "open, 100k atoms"): (lambda md: radius_graph(pos, 5.0, backend="vesin", min_distance=md), 3),
        ("vesin", "periodic, 100k atoms"): (
            lambda md: periodic_radius_graph(pos, 5.0, cell, pbc, backend="vesin", min_distance=md), 3),
        ("cell_list", "open, 100k atoms"): (lambda md: radius_graph(pos, 5.0, backend="cell_list", min_distance=md), 2),
        ("brute", "4096 atoms in graphs of 32"): (
            lambda md: radius_graph(mpos, 5.0, mbatch, backend="brute", min_distance=md), 15),
    }


def main():
    torch.set_num_threads(1)
    rows = []
    for (backend, setting), (search, repeats) in cases().items():
        search(0.0)
        times = {0.0: [], 1e-4: []}
        for _ in range(repeats):
            for md in times:
                start = time.perf_counter()
                search(md)
                times[md].append(time.perf_counter() - start)
        off, on = min(times[0.0]), min(times[1e-4])
        print(f"{backend:10s} {setting:28s} off {off * 1e3:8.1f} ms  on {on * 1e3:8.1f} ms  {on / off:.3f}x", flush=True)
        rows += [row(f"radius graph ({backend})", setting, "time, check off", off * 1e3, "ms"),
                 row(f"radius graph ({backend})", setting, "time, check on", on * 1e3, "ms"),
                 row(f"radius graph ({backend})", setting, "check on / off", on / off, "x")]
    write("coincidence_check", rows, notes=__doc__)


if __name__ == "__main__":
    main()
