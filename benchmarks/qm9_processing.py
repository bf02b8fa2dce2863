"""Time to process all of QM9 from the ``qm9pack`` CSVs into equigraph's cache, and to load
the processed cache, on one CPU thread. Processing goes to a temporary folder so the user's
cache is untouched.

Run: ``python benchmarks/qm9_processing.py``
"""
from __future__ import annotations

import tempfile
import time

import torch

from _results import row, write


def main() -> None:
    torch.set_num_threads(1)
    from equigraph.datasets import QM9

    with tempfile.TemporaryDirectory() as root:
        t0 = time.perf_counter()
        ds = QM9(root=root, log=False)
        process_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ds = QM9(root=root, log=False)
        load_s = time.perf_counter() - t0
        n, atoms = len(ds), ds._data.z.numel()
        t0 = time.perf_counter()
        for i in range(0, n, 13):
            ds[i]
        access_us = (time.perf_counter() - t0) / len(range(0, n, 13)) * 1e6
    rows = [
        row("QM9", "qm9pack -> processed cache", "process time", process_s, "s", molecules=n, atoms=atoms),
        row("QM9", "processed cache", "load time", load_s, "s", molecules=n),
        row("QM9", "processed cache", "ds[i] access", access_us, "us", molecules=n),
    ]
    write("qm9_processing", rows, notes="One CPU thread; includes reading the three qm9pack CSVs "
          "(about 225 MB) with pandas and building the collated tensors directly.")


if __name__ == "__main__":
    main()
