"""``benchmarks/aggregation.py``: the three sums over neighbours agree (the check that makes
the timings comparable) and the quick run writes its rows. Tiny sizes."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks import _results  # noqa: E402
from benchmarks import aggregation as bench  # noqa: E402


def test_reductions_agree_with_a_loop_including_empty_nodes():
    index = torch.tensor([0, 0, 2, 2, 2, 4])  # nodes 1 and 3 receive nothing
    src = torch.randn(6, 3, dtype=torch.float64)
    want = torch.stack([src[index == i].sum(0) for i in range(5)])
    for name, fn in bench.reductions(index, 5).items():
        torch.testing.assert_close(fn(src), want, msg=name)


def test_quick_run_writes_every_method(tmp_path, monkeypatch):
    monkeypatch.setattr(_results, "RESULTS", tmp_path)
    threads = torch.get_num_threads()
    try:
        bench.main(["--quick", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    rows = json.loads((tmp_path / "aggregation.json").read_text())["rows"]
    assert {r["model"] for r in rows} == {"scatter", "index_add", "segment_reduce",
                                          "speed-up: index_add vs scatter", "speed-up: segment_reduce vs scatter"}
    assert all(r["value"] > 0 for r in rows)
