"""``benchmarks/trainer_overhead.py``: its fit overrides are a valid config and its plain loop
trains (tiny synthetic data; the timing itself is the benchmark's business)."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "train"))

from benchmarks import trainer_overhead as bench  # noqa: E402
from equigraph.train.config import load_config  # noqa: E402
from train_helpers import egnn_config  # noqa: E402


def test_overrides_are_a_valid_config(tmp_path):
    cfg = load_config(str(bench.CONFIG), bench.overrides(1920, 3, str(tmp_path)))
    assert cfg["data"]["loader"] == "device" and cfg["data"]["max_train"] == 1920
    assert cfg["model"]["hidden_channels"] == 8 and cfg["model"]["num_layers"] == 1
    assert cfg["train"]["max_epochs"] == 3 and cfg["model"]["interaction_graph"] == 1.6


def test_plain_loop_trains_on_every_batch(tmp_path):
    cfg = load_config(egnn_config(tmp_path))
    cfg["data"]["batch_size"] = 10
    seconds, steps = bench.plain_loop(cfg, epochs=2)
    assert steps == 5 and seconds > 0  # 48 training molecules in batches of 10
