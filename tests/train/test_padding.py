"""``data.pad_buckets``: batches padded to bucket sizes change nothing the trainer reports."""
from __future__ import annotations

import math

import pytest
import torch
from torch_geometric.data import Batch, Data

from equigraph.data import from_ase
from equigraph.data import keys as K
from equigraph.datasets.emt import generate_emt_structures
from equigraph.models import EGNN, ForceField
from equigraph.models.segnn import SEGNN
from equigraph.models.tfn import TFN
from equigraph.train.device_loader import DeviceBatches
from equigraph.train.padding import BucketPadding
from equigraph.train.run import fit
from equigraph.train.targets import Target, pair

from train_helpers import TinyModel, egnn_config, molecules, splits, tiny_config


def _padded_and_plain(graphs, batch_size, pad, order, graph=None):
    padded = DeviceBatches(graphs, batch_size, pad=pad, graph=graph)
    plain = DeviceBatches(graphs, batch_size, graph=graph)
    return padded.gather(order), plain.gather(order)


@pytest.mark.parametrize("growth", [0.05, 0.1, 1.0])
def test_buckets_are_a_geometric_grid_above_the_count(growth):
    pad = BucketPadding(growth)
    sizes = sorted({pad.bucket(n) for n in range(1, 20000)})
    assert all(s % 8 == 0 for s in sizes)
    for n in (1, 7, 8, 9, 100, 1727, 19999):
        size = pad.bucket(n)
        assert size >= n
        assert size == 8 or size <= 8 * math.ceil(n * (1 + growth) / 8)  # at most one step above
    # Relative steps of about `growth` (multiples of 8 round the small ones).
    big = [s for s in sizes if s > 800]
    assert all(abs(b / a - 1 - growth) <= 16 / a for a, b in zip(big, big[1:]))


@pytest.mark.parametrize("real_graphs", [1, 3, 4])
def test_plan_pads_graphs_nodes_and_edges_without_self_loops(real_graphs):
    pad = BucketPadding(0.1)
    plan = pad.plan(real_nodes=37, real_edges=100, real_graphs=real_graphs, batch_size=4)
    assert plan["graphs"] == 5
    pad_nodes = plan["nodes"] - 37
    assert plan["graph_of_node"].numel() == pad_nodes
    extra = 5 - real_graphs
    # One atom per padding graph but the last, which holds the rest (>= 2) and every padding edge.
    counts = torch.bincount(plan["graph_of_node"] - real_graphs).tolist()
    assert counts[:-1] == [1] * (extra - 1) and counts[-1] >= 2
    ei = plan["edge_index"]
    assert ei.shape == (2, plan["edges"] - 100)
    first_line_atom = 37 + extra - 1
    assert bool((ei >= first_line_atom).all()) and bool((ei < plan["nodes"]).all())
    assert bool((ei[0] != ei[1]).all())
    assert bool(((ei[0] - ei[1]).abs() == 1).all())  # neighbours on the line: length = spacing


def test_padded_batch_holds_the_plain_batch_then_separate_padding_graphs():
    graphs = [Data(pos=d.pos, z=d.z, y=d.y, cell=torch.eye(3).unsqueeze(0) * 9, name=f"m{i}")
              for i, d in enumerate(molecules(7))]
    model = EGNN(hidden_channels=8, num_layers=1, interaction_graph=2.5)
    pad = BucketPadding(0.1, spacing=0.7)
    for order in ([4, 0, 6], [2], [6, 5, 4, 3]):
        padded, plain = _padded_and_plain(graphs, 4, pad, torch.tensor(order), graph=lambda b: model.graph(b)[:2])
        g, n, e = plain.num_graphs, plain.num_nodes, plain.edge_index.size(1)
        assert padded.num_graphs == 5 and padded[K.REAL_GRAPHS] == g and padded[K.REAL_NODES] == n
        assert padded.num_nodes == pad.bucket(n + 5 - g + 1) and padded.edge_index.size(1) == pad.bucket(e)
        for key in (K.POS, K.Z, K.BATCH):
            assert torch.equal(padded[key][:n], plain[key])
        assert torch.equal(padded.y[:g], plain.y) and torch.equal(padded.cell[:g], plain.cell)
        assert torch.equal(padded.edge_index[:, :e], plain.edge_index)
        assert padded.name == plain.name
        # Padding: its own graphs, its own edges, unit cells, valid atomic numbers, finite lengths.
        assert bool((padded.batch[n:] >= g).all()) and torch.equal(padded.ptr.diff().sum(), torch.tensor(padded.num_nodes))
        assert bool((padded.edge_index[:, e:] >= n).all())
        assert torch.equal(padded.cell[g:], torch.eye(3).expand(5 - g, 3, 3))
        assert bool((padded.z[n:] == plain.z[0]).all())
        pad_vec = padded.pos[padded.edge_index[0, e:]] - padded.pos[padded.edge_index[1, e:]]
        assert torch.allclose(pad_vec.norm(dim=-1), torch.tensor(0.7))


def _compare(model, padded, plain, keys, atol):
    a, b = model(padded), model(plain)
    g, n = plain.num_graphs, plain.num_nodes
    for key in keys:
        rows = g if a[key].size(0) == padded.num_graphs else n
        assert bool(torch.isfinite(a[key]).all()), key
        assert torch.allclose(a[key][:rows], b[key], atol=atol), key


@pytest.mark.parametrize("name", ["egnn", "segnn", "tfn"])
def test_models_give_the_same_real_outputs_on_padded_batches(name):
    torch.manual_seed(0)
    build = {
        "egnn": lambda: EGNN(hidden_channels=8, num_layers=2, out_channels=1, interaction_graph=3.0),
        "segnn": lambda: SEGNN(hidden_channels=8, num_layers=1, lmax_h=1, lmax_attr=1, out_channels=1,
                               interaction_graph=3.0),
        "tfn": lambda: TFN(hidden_irreps="8x0e+4x1o", num_layers=1, lmax=1, out_channels=1, interaction_graph=3.0),
    }[name]
    model = build().double()
    graphs = [Data(pos=d.pos.double(), z=d.z, y=d.y) for d in molecules(6)]
    pad = BucketPadding(0.1, spacing=min(1.0, model.cutoff / 2))
    padded, plain = _padded_and_plain(graphs, 4, pad, torch.tensor([5, 1, 3]), graph=lambda b: model.graph(b)[:2])
    _compare(model, padded, plain, [K.Y, K.H], atol=1e-10)


def test_force_field_on_padded_periodic_batches_energy_forces_stress_and_loss():
    torch.manual_seed(0)
    egnn = EGNN(hidden_channels=8, num_layers=2, out_channels=1, interaction_graph=4.0, update_coords=False,
                atom_ref=True)
    model = ForceField(egnn, stress=True).double()
    graphs = [from_ase(a, dtype=torch.float64, info=False) for a in generate_emt_structures(3)]
    for d in graphs:
        d.y = d.energy.reshape(1, 1)
    pad = BucketPadding(0.2, spacing=1.0)
    padded, plain = _padded_and_plain(graphs, 3, pad, torch.tensor([2, 0]), graph=lambda b: egnn.graph(b)[:2])
    assert padded.shift.size(0) == padded.edge_index.size(1) and bool((padded.shift[plain.shift.size(0):] == 0).all())
    _compare(model, padded, plain, [K.ENERGY, K.FORCES, K.STRESS], atol=1e-9)
    # The trainer's pairing scores real rows only: the losses and their gradients agree.
    targets = [Target("energy", K.ENERGY, K.ENERGY, "graph", "eV", extensive=True),
               Target("forces", K.FORCES, K.FORCES, "node", "eV/Å")]
    losses = []
    for batch in (padded, plain):
        model.zero_grad()
        out = model(batch)
        loss = sum((p - t).abs().mean() for p, t in (pair(tg, out, batch) for tg in targets))
        loss.backward()
        losses.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    assert torch.allclose(losses[0][0], losses[1][0], atol=1e-10)
    assert all(bool(torch.isfinite(g).all()) for g in losses[0][1])
    assert all(torch.allclose(a, b, atol=1e-9) for a, b in zip(losses[0][1], losses[1][1]))


def test_fit_with_padding_matches_fit_without(tmp_path):
    results = {}
    for pad in (None, 0.1):
        cfg = egnn_config(tmp_path / str(pad), max_epochs=2)
        cfg["data"]["loader"] = "device"
        cfg["data"]["pad_buckets"] = pad
        results[pad] = fit(cfg)
    a, b = results[None], results[0.1]
    assert math.isfinite(a.val_mae)
    assert b.val_mae == pytest.approx(a.val_mae, rel=1e-5)
    assert b.test_mae == pytest.approx(a.test_mae, rel=1e-5)
    # Molecules/s counts the real molecules: both runs trained on the same number.
    assert b.num_train == a.num_train


@pytest.mark.parametrize("change, message", [
    ({"pad_buckets": 0.1}, r"data.pad_buckets pads the batches of data.loader=device; data.loader is 'pyg'"),
    ({"pad_buckets": 1.5, "loader": "device"}, r"data.pad_buckets must be a relative bucket step in \(0, 1\]"),
    ({"pad_buckets": "yes", "loader": "device"}, r"data.pad_buckets must be"),
])
def test_bad_padding_options_are_config_errors(tmp_path, change, message):
    cfg = egnn_config(tmp_path)
    cfg["data"].update(change)
    with pytest.raises(ValueError, match=message):
        fit(cfg)


def test_one_atom_cells_keep_graph_keys_per_graph():
    # Every graph has one atom: nodes and graphs share slice tables, cells must stay per graph.
    graphs = [Data(pos=torch.zeros(1, 3), z=torch.tensor([29]), cell=(3.0 + i) * torch.eye(3).unsqueeze(0),
                   pbc=torch.ones(1, 3, dtype=torch.bool), energy=torch.tensor([float(i)]),
                   edge_index=torch.tensor([[0], [0]]), shift=torch.tensor([[1.0, 0.0, 0.0]])) for i in range(3)]
    padded = DeviceBatches(graphs, 2, pad=BucketPadding()).gather(torch.tensor([0, 1]))
    assert padded.num_graphs == 3 and padded.cell.shape == (3, 3, 3) and padded.energy.shape == (3,)
    assert torch.equal(padded.cell[2], torch.eye(3)) and not bool(padded.pbc[2].any())
    assert padded[K.REAL_NODES] == 2 and bool((padded.batch[2:] == 2).all())  # the padding atoms: graph 2


def test_padding_refuses_what_it_cannot_pad():
    graphs = [Data(pos=d.pos, z=d.z) for d in molecules(3)]
    with pytest.raises(ValueError, match=r"the train split has no data.edge_index, and the model builds its graph"):
        DeviceBatches(graphs, 2, pad=BucketPadding())
    odd = [Data(pos=d.pos, z=d.z, edge_index=torch.zeros(2, 0, dtype=torch.long), pair_y=torch.zeros(2, 1))
           for d in molecules(3)]
    with pytest.raises(ValueError, match=r"data.pair_y of the val split has neither one row per node, per edge nor "
                                         r"per graph"):
        DeviceBatches(odd, 2, pad=BucketPadding(), split="val")
    with pytest.raises(ValueError, match=r"data.pad_buckets: the relative bucket step must be a number in \(0, 1\]"):
        BucketPadding(0.0)
    with pytest.raises(ValueError, match="spacing: must be a finite positive length"):
        BucketPadding(0.1, spacing=float("nan"))


def test_a_model_that_builds_its_own_graph_cannot_be_padded(tmp_path):
    cfg = tiny_config(tmp_path, max_epochs=1)
    cfg["data"]["loader"] = "device"
    cfg["data"]["pad_buckets"] = 0.1
    with pytest.raises(ValueError, match=r"data.pad_buckets: the (train|val) split has no data.edge_index"):
        fit(cfg, splits=splits(8, 4, 4), model=TinyModel())


def test_batch_statistics_norms_refuse_padding(tmp_path):
    cfg = egnn_config(tmp_path)
    cfg["model"] = {"name": "segnn", "hidden_channels": 4, "num_layers": 1, "lmax_h": 1, "lmax_attr": 1,
                    "irreps_in": "15x0e", "out_channels": 1, "norm": "batch", "interaction_graph": 3.0}
    cfg["data"].update(loader="device", pad_buckets=0.1)
    with pytest.raises(ValueError, match=r"data.pad_buckets: the model normalises over the whole batch \(.*BatchNorm\)"):
        fit(cfg)


def test_padded_batches_have_few_shapes_over_an_epoch():
    graphs = [Data(pos=d.pos, z=d.z, y=d.y) for d in molecules(64)]
    model = EGNN(hidden_channels=8, num_layers=1, interaction_graph=3.0)
    loader = DeviceBatches(graphs, 16, shuffle=True, pad=BucketPadding(0.25), graph=lambda b: model.graph(b)[:2])
    shapes = set()
    for _ in range(3):
        for batch in loader:
            shapes.add((batch.num_graphs, batch.num_nodes, batch.edge_index.size(1)))
            assert batch.num_graphs == 17
    plain = {(b.num_nodes, b.edge_index.size(1)) for _ in range(3) for b in DeviceBatches(
        graphs, 16, shuffle=True, graph=lambda b: model.graph(b)[:2])}
    assert len(shapes) < len(plain)
