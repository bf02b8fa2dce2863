"""``benchmarks/steerable_speed.py``: the re-implementation of the original SEGNN code
computes the same function as equigraph's layers on the same weights (the check that makes
the speed-ups meaningful), the alternative e3nn code paths are exact, the peak-memory probe
sees what a step allocates, and ``--device`` rejects what it cannot run on. Tiny sizes."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from e3nn import o3
from torch_geometric.data import Data

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks import steerable_speed as bench  # noqa: E402
from benchmarks.reference import segnn_original as orig  # noqa: E402
from equigraph.nn.steerable import O3TensorProductGate, SteerableAttributes, WeightBalancedIrreps  # noqa: E402


def _graph():
    batch = bench.qm9_batch(2.0, seed=1, num=3, atoms=5)
    return batch["pos"], batch["edge_index"], batch["batch"]


def test_original_qm9_network_agrees_with_equigraph_on_the_same_weights():
    pos, edge_index, batch = _graph()
    vec = bench.edge_vec(pos, edge_index)
    attrs = SteerableAttributes(lmax=1)
    edge_attr, node_attr = attrs(vec, edge_index, pos.size(0))
    hidden = WeightBalancedIrreps(8, attrs.irreps_out, lmax=1)
    args = (o3.Irreps("5x0e"), hidden, o3.Irreps("1x0e"), attrs.irreps_out, 1, o3.Irreps("1x0e"))
    torch.manual_seed(0)
    ours = bench.SEGNNNet(*args, norm="instance", task="graph")
    original = orig.SEGNN(args[0], hidden, args[2], args[3], args[3], num_layers=1, norm="instance", pool="avg",
                          task="graph", additional_message_irreps=args[5])
    bench.copy_weights(ours, original)
    # Weights away from their initial values, and distinct biases: no agreement by symmetry.
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.1 * torch.randn_like(p))
    bench.copy_weights(ours, original)
    x = torch.nn.functional.one_hot(torch.randint(0, 5, (pos.size(0),)), 5).float()
    extra = vec.square().sum(1, keepdim=True)
    graph = Data(x=x, edge_index=edge_index, edge_attr=edge_attr, node_attr=node_attr.clone(),
                 additional_message_features=extra, batch=batch)
    expected = original(graph)
    got = ours(x, edge_index, edge_attr, node_attr, extra, batch)
    assert got.shape == (3, 1)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_copy_weights_names_a_layout_mismatch():
    # The original names a bias "biases": a module that keeps "bias" is a different layout.
    ours, original = torch.nn.Sequential(torch.nn.Linear(2, 2)), torch.nn.Sequential(torch.nn.Linear(2, 2))
    with pytest.raises(RuntimeError, match="parameter names differ"):
        bench.copy_weights(ours, original)


@pytest.mark.parametrize("option", [{"_specialized_code": False}, {"_optimize_einsums": False}])
def test_e3nn_code_paths_compute_the_same_tensor_product(option):
    attr = o3.Irreps.spherical_harmonics(2)
    ours = O3TensorProductGate("4x0e+3x1o+2x2e", "4x0e+2x1o+2x2e", attr).tp
    with torch.no_grad():
        ours.bias.normal_()
    variant = bench._E3nnVariant(ours, **option)
    x, a = torch.randn(7, ours.irreps_in.dim), torch.randn(7, attr.dim)
    torch.testing.assert_close(variant(x, a), ours(x, a), rtol=1e-5, atol=1e-6)


def test_check_raises_when_implementations_disagree():
    ref = torch.ones(4)
    assert bench._check("same", ref.clone(), ref) == 0
    with pytest.raises(RuntimeError, match="disagree"):
        bench._check("off", ref + 1e-2, ref)


@pytest.mark.skipif(not bench.cpu_peak_supported(), reason="this OS cannot reset a process's peak RSS")
def test_cpu_peak_memory_sees_what_a_step_allocates():
    def big():
        t = torch.ones(32 * 2 ** 20 // 4)  # 32 MiB, touched
        return float(t[-1])

    assert bench.peak_memory_mib(big, torch.device("cpu")) >= 30
    assert bench.peak_memory_mib(lambda: None, torch.device("cpu")) < 8


def test_resolve_device_rejects_what_it_cannot_run_on():
    assert bench.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="--device must be"):
        bench.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            bench.resolve_device("cuda")


def test_merged_input_irreps_compute_the_same_tensor_product():
    # x_i + x_j + extra: every irrep of the input twice, merged into one block each.
    attr = o3.Irreps.spherical_harmonics(2)
    hidden = o3.Irreps("3x0e+2x1o+2x2e")
    ours = O3TensorProductGate((hidden + hidden + o3.Irreps("1x0e")).simplify(), hidden, attr).tp
    with torch.no_grad():
        ours.bias.normal_()
    # The library's merged product (the benchmark's default row) against the unmerged one.
    assert len(ours.merged_tp.instructions) < len(ours.tp.instructions)
    assert sorted(ours._merged_weight_index.tolist()) == list(range(ours.weight_numel))  # a permutation
    x, a = torch.randn(7, ours.irreps_in.dim), torch.randn(7, attr.dim)
    torch.testing.assert_close(ours(x, a), bench._Unmerged(ours)(x, a), rtol=1e-5, atol=1e-6)
