"""``benchmarks/gpu_speed.py``: the re-implementation of the original EGNN code's QM9 model
(``benchmarks/reference/egnn_qm9_original.py``) computes equigraph's QM9 EGNN function on
the same weights (the check that makes its speed comparison meaningful), and the script's
quick mode runs end to end on tiny sizes on the CPU.

QM9 here is its first 40 molecules (``max_molecules``), processed once per module.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from torch_geometric.data import Batch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks import _results, gpu_speed  # noqa: E402
from benchmarks.reference import egnn_qm9_original as ref  # noqa: E402
from equigraph.data import keys as K  # noqa: E402
from equigraph.models.registry import build_model  # noqa: E402


@pytest.fixture(scope="module")
def qm9_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("qm9"))


@pytest.fixture(scope="module")
def qm9(qm9_root):
    return gpu_speed.qm9_dataset(qm9_root, max_molecules=40)


def _models(hidden=16, layers=3):
    torch.manual_seed(0)
    ours = build_model(gpu_speed.qm9_model_config(hidden_channels=hidden, num_layers=layers, interaction_graph="full"))
    original = ref.EGNN(in_node_nf=15, in_edge_nf=0, hidden_nf=hidden, n_layers=layers, attention=True)
    original.load_state_dict(gpu_speed.original_state(ours))
    return ours, original


def test_original_qm9_egnn_agrees_with_equigraph_on_the_same_weights(qm9):
    ours, original = _models()
    # Molecules of different sizes: the original pads them and masks the padding.
    batch = Batch.from_data_list([qm9[i] for i in range(8)])
    h0, x, edges, node_mask, edge_mask, n = gpu_speed.padded(batch)
    assert n == int(torch.bincount(batch[K.BATCH]).max()) and edges[0].numel() == 8 * n * n
    assert int(edge_mask.sum()) == ours.graph(batch).edge_index.size(1)  # the real pairs, no self pairs
    # Weights away from their initial values: the check must not pass by symmetry of the init.
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.05 * torch.randn_like(p))
        original.load_state_dict(gpu_speed.original_state(ours))
    expected = ours(batch)[K.Y].view(-1)
    got = original(h0, x, edges, None, node_mask, edge_mask, n)
    assert got.shape == (8,)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
    # Gradients agree too (the train step runs the same backward).
    expected.sum().backward()
    got.sum().backward()
    grads = dict(original.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(grads[gpu_speed.original_name(name)].grad, p.grad, rtol=1e-3, atol=1e-5)


def _original(model, molecules):
    h0, x, edges, node_mask, edge_mask, n = gpu_speed.padded(Batch.from_data_list(molecules))
    return model(h0, x, edges, None, node_mask, edge_mask, n)


def test_padding_changes_nothing_for_a_molecule(qm9):
    _, original = _models(hidden=8, layers=2)
    small = min(range(8), key=lambda i: qm9[i].num_nodes)
    big = max(range(8), key=lambda i: qm9[i].num_nodes)
    assert qm9[small].num_nodes < qm9[big].num_nodes
    alone = _original(original, [qm9[small]])
    padded = _original(original, [qm9[small], qm9[big]])
    torch.testing.assert_close(padded[0], alone[0], rtol=1e-5, atol=1e-5)


def test_original_state_refuses_a_readout_with_units(qm9):
    ours, _ = _models(hidden=8, layers=1)
    ours.readout.set_statistics(scale=2.0)
    with pytest.raises(ValueError, match="scale"):
        gpu_speed.original_state(ours)


def test_device_argument():
    assert gpu_speed.resolve_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="--device"):
        gpu_speed.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="--device cuda"):
            gpu_speed.resolve_device("cuda")


def test_quick_mode_writes_every_batch(qm9, qm9_root, tmp_path, monkeypatch):
    monkeypatch.setattr(_results, "RESULTS", tmp_path)
    threads = torch.get_num_threads()
    try:
        gpu_speed.main(["--tiny", "--quick", "--device", "cpu", "--threads", "1", "--no-trainer",
                        "--qm9-root", qm9_root, "--qm9-max-molecules", "40"])
    finally:
        torch.set_num_threads(threads)
    doc = json.loads((tmp_path / "gpu_speed.json").read_text())
    rows = doc["rows"]
    speedups = [r for r in rows if r["model"] == "speed-up: equigraph EGNN vs original"]
    # Three batches x (forward, plain-Adam step, own-optimiser step).
    assert len(speedups) == 9 and all(r["value"] > 0 for r in speedups)
    assert {r["setting"].split(" ")[0] for r in speedups} == {"N-body", "QM9"}
    assert any(r["model"] == gpu_speed.QM9_SHIPPED and r["metric"] == "train step, Adam fused" for r in rows)
    assert "CPU numbers" in (tmp_path / "gpu_speed.md").read_text()


@pytest.mark.parametrize("loader", ["pyg", "device"])
def test_trainer_row_passes_valid_overrides(loader, monkeypatch):
    # The trainer itself is tested under tests/train; here: what the row asks of it.
    from equigraph.train import config, run

    seen = {}

    def fake_fit(path, overrides, splits=None):
        seen.update(path=path, overrides=overrides, splits=splits)
        return "result"

    monkeypatch.setattr(run, "fit", fake_fit)
    result, used = gpu_speed.trainer_rate(torch.device("cpu"), 960, 2, threads=1, loader=loader,
                                          overrides=["model.interaction_graph=full"])
    assert result == "result" and seen["overrides"] == used and seen["path"] == str(gpu_speed.CONFIG)
    cfg = config.load_config(seen["path"], used)  # every key is one the config accepts
    assert cfg["data"]["max_train"] == 960 and cfg["train"]["max_epochs"] == 2
    assert cfg["train"]["num_threads"] == 1 and cfg["data"]["num_workers"] == 0
    assert cfg["model"]["interaction_graph"] == "full" and cfg["data"]["loader"] == loader
    assert f"data.loader={loader}" in used  # always explicit: the config's default is the device loader


@pytest.mark.parametrize("cuda", [False, True])
def test_static_shape_row_is_a_valid_config(cuda):
    from equigraph.train import config

    used = gpu_speed.static_overrides(0.1, cuda)
    cfg = config.load_config(gpu_speed.CONFIG, ["data.loader=device", *used])
    assert cfg["data"]["loader"] == "device" and cfg["data"]["pad_buckets"] == 0.1
    assert cfg["train"]["compile"] == ({"mode": "reduce-overhead"} if cuda else True)


def test_batch_shapes_counts_fewer_padded_shapes(qm9):
    counts = gpu_speed.batch_shapes(qm9, growth=0.5, epochs=3, batch_size=8)
    (plain, plain_total), (padded, padded_total) = counts["unpadded"], counts["padded"]
    assert plain_total == padded_total == 3 * -(-len(qm9) // 8)
    assert 1 <= padded < plain <= plain_total
