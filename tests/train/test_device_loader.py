"""``data.loader: device``: batches gathered from a split collated once, checked once."""
from __future__ import annotations

import math

import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader

from equigraph.data import keys as K
from equigraph.data.featurizers import ChargePower
from equigraph.models import EGNN, inputs
from equigraph.train.device_loader import DeviceBatches, check_records
from equigraph.train.run import fit

from train_helpers import egnn_config, molecules


def _graphs(count=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(count):
        n = int(torch.randint(2, 6, (1,), generator=g))
        src = torch.randint(0, n, (2 * n,), generator=g)
        dst = torch.randint(0, n, (2 * n,), generator=g)
        out.append(Data(pos=torch.randn(n, 3, generator=g), z=torch.randint(1, 9, (n,), generator=g),
                        edge_index=torch.stack([src, dst]), shift=torch.randint(-1, 2, (2 * n, 3), generator=g),
                        edge_attr=torch.randn(2 * n, 2, generator=g), y=torch.randn(1, 3, generator=g),
                        name=f"mol{i}"))
    return out


def _same(a: Batch, b: Batch):
    assert set(a.keys()) == set(b.keys())
    for key in a.keys():
        va, vb = a[key], b[key]
        if isinstance(va, torch.Tensor):
            assert torch.equal(va, vb), key
        else:
            assert list(va) == list(vb), key
    assert a.num_graphs == b.num_graphs


def test_gather_equals_pyg_collation_in_any_order():
    graphs = _graphs()
    loader = DeviceBatches(graphs, batch_size=3)
    for order in ([4, 0, 6], [2], [6, 5, 4, 3, 2, 1, 0]):
        _same(loader.gather(torch.tensor(order)), Batch.from_data_list([graphs[i] for i in order]))


def test_epoch_batches_equal_pyg_dataloader_with_the_same_seed():
    graphs = _graphs(11)
    ours = DeviceBatches(graphs, batch_size=4, shuffle=True)
    theirs = DataLoader(graphs, batch_size=4, shuffle=True)
    for _ in range(2):  # two epochs: each reshuffles
        torch.manual_seed(5)
        a = list(ours)
        torch.manual_seed(5)
        b = list(theirs)
        assert len(a) == len(b) == len(ours) == 3
        for x, y in zip(a, b):
            _same(x, y)


def test_ranks_share_one_permutation_and_cover_the_split():
    graphs = _graphs(7)
    seen = []
    for rank in range(3):
        loader = DeviceBatches(graphs, batch_size=2, shuffle=True, rank=rank, world_size=3, seed=1)
        names = [n for b in loader for n in b.name]
        assert len(names) == 3 and len(loader) == 2  # ceil(7 / 3) graphs each, padded by repetition
        seen += names
    assert set(seen) == {g.name for g in graphs}


def test_records_are_checked_once_naming_the_record():
    graphs = _graphs()
    graphs[3].pos[1, 0] = float("nan")
    with pytest.raises(ValueError, match=r"data.pos of the val split, record 3 \(mol3\): contains NaN or inf"):
        DeviceBatches(graphs, batch_size=2, split="val")
    graphs = _graphs()
    graphs[5].edge_index[0, 0] = graphs[5].num_nodes  # one past its own graph's nodes
    with pytest.raises(ValueError, match=r"data.edge_index of the train split, record 5 \(mol5\): has an edge "
                                         "to a node outside its graph"):
        DeviceBatches(graphs, batch_size=2)
    graphs = _graphs()
    graphs[2].z[0] = 50
    with pytest.raises(ValueError, match=r"data.z of the train split, record 2 \(mol2\): has an atomic number "
                                         r"outside \[0, max_z=10\)"):
        DeviceBatches(graphs, batch_size=2, max_z=10)
    check_records(Batch.from_data_list(_graphs()), max_z=10)  # clean data passes


def test_random_transforms_are_refused_featurisers_accepted():
    class Shift:
        def __call__(self, data):
            return data

    class Named(list):
        transform = Shift()

    with pytest.raises(ValueError, match="per-access transform .* use data.loader=pyg"):
        DeviceBatches(Named(_graphs()), batch_size=2)

    class Featurised(list):
        transform = ChargePower()

    DeviceBatches(Featurised(_graphs()), batch_size=2)


def test_bad_arguments_are_errors():
    with pytest.raises(ValueError, match="batch_size: must be positive"):
        DeviceBatches(_graphs(), batch_size=0)
    with pytest.raises(ValueError, match="the val split is empty"):
        DeviceBatches([], batch_size=2, split="val")
    with pytest.raises(ValueError, match=r"the train split has no data.pos"):
        DeviceBatches([Data(x=torch.zeros(2, 1))], batch_size=2)


def test_graph_built_once_per_split_is_the_models_graph():
    graphs = [Data(pos=d.pos, z=d.z) for d in molecules(9)]
    model = EGNN(hidden_channels=8, num_layers=1, interaction_graph=2.5)
    loader = DeviceBatches(graphs, batch_size=4, graph=lambda b: model.graph(b)[:2], graph_chunk=5)
    for batch in loader:
        plain = Batch.from_data_list([Data(pos=p, z=z) for p, z in
                                      zip(batch.pos.split(batch.ptr.diff().tolist()),
                                          batch.z.split(batch.ptr.diff().tolist()))])
        want = model.graph(plain).edge_index
        assert sorted(map(tuple, batch.edge_index.t().tolist())) == sorted(map(tuple, want.t().tolist()))
        out = model(batch)["h"]
        assert torch.allclose(out, model(plain)["h"], atol=1e-5)


def test_trusted_inputs_skip_value_checks_only():
    data = Data(pos=torch.tensor([[0.0, 0.0, float("nan")]]), x=torch.zeros(1, 1))
    with pytest.raises(ValueError, match="contains NaN"):
        inputs.check_finite({"pos": data.pos})
    with inputs.trusted():
        assert not inputs.values_checked()
        inputs.check_finite({"pos": data.pos})
        with pytest.raises(ValueError, match=r"must have shape \[N, 3\]"):  # shapes still checked
            inputs.positions(Data(pos=torch.zeros(2, 2)))
    assert inputs.values_checked()


@pytest.mark.parametrize("name", ["egnn", "schnet"])
def test_trusted_models_still_check_shapes_but_not_values(name):
    from equigraph.models.schnet import SchNet

    model = (EGNN(hidden_channels=8, num_layers=1, interaction_graph=3.0) if name == "egnn"
             else SchNet(hidden_channels=8, num_filters=8, num_interactions=1, num_gaussians=4, cutoff=3.0))
    pos = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    edges = torch.tensor([[0, 1], [1, 0]])
    bad_shift = Data(pos=pos, z=torch.ones(2, dtype=torch.long), edge_index=edges, shift=torch.zeros(2, 2),
                     cell=torch.eye(3).unsqueeze(0))
    out_of_range = Data(pos=pos, z=torch.ones(2, dtype=torch.long), edge_index=torch.tensor([[0, 5], [1, 0]]))
    with inputs.trusted():
        with pytest.raises(ValueError, match=r"`?shift`? must have shape \[E"):
            model(bad_shift)
    with pytest.raises(ValueError, match="`edge_index` refers to node 5"):
        model(out_of_range)
    seen = []
    monkey = torch.Tensor.max
    try:  # the range check reads max(): not under trusted inputs
        torch.Tensor.max = lambda self, *a, **k: seen.append(1) or monkey(self, *a, **k)
        with inputs.trusted():
            model(Data(pos=pos, z=torch.ones(2, dtype=torch.long), edge_index=edges))
    finally:
        torch.Tensor.max = monkey
    assert not seen


def test_fit_with_the_device_loader_matches_the_pyg_loader(tmp_path):
    results = {}
    for loader in ("pyg", "device"):
        cfg = egnn_config(tmp_path / loader, max_epochs=2)
        cfg["data"]["loader"] = loader
        results[loader] = fit(cfg)
    a, b = results["pyg"], results["device"]
    assert math.isfinite(a.val_mae) and math.isfinite(b.val_mae)
    assert b.val_mae == pytest.approx(a.val_mae, rel=1e-5)
    assert b.test_mae == pytest.approx(a.test_mae, rel=1e-5)


def test_compile_and_matmul_precision_reach_torch(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: seen.setdefault("compile", kw))
    monkeypatch.setattr(torch, "set_float32_matmul_precision", lambda p: seen.setdefault("precision", p))
    cfg = egnn_config(tmp_path, max_epochs=1, compile={"dynamic": False}, matmul_precision="high")
    fit(cfg)
    assert seen == {"compile": {"dynamic": False}, "precision": "high"}


@pytest.mark.parametrize("key, value, message", [
    ("train.compile", {"fast": True}, r"train.compile has unknown keys \['fast'\]"),
    ("train.compile", "yes", "train.compile must be true/false or a mapping"),
    ("train.matmul_precision", "tf32", "train.matmul_precision must be one of highest, high, medium"),
    ("data.loader", "gpu", "data.loader must be one of pyg, device"),
])
def test_bad_speed_options_are_config_errors(tmp_path, key, value, message):
    cfg = egnn_config(tmp_path)
    section, name = key.split(".")
    cfg[section][name] = value
    with pytest.raises(ValueError, match=message):
        fit(cfg)


def test_supplied_edges_beyond_the_models_cutoff_are_refused_once_per_split(tmp_path):
    # Steps with trusted inputs skip the model's own check: the loader's check replaces it.
    model = EGNN(hidden_channels=8, num_layers=1, interaction_graph=2.0)
    assert model.supplied_edge_limit == 2.0
    assert EGNN(hidden_channels=8, num_layers=1, interaction_graph=2.0, envelope=False).supplied_edge_limit is None
    graphs = [Data(pos=torch.tensor([[0.0, 0.0, 0.0], [d, 0.0, 0.0]]), z=torch.ones(2, dtype=torch.long),
                   edge_index=torch.tensor([[0, 1], [1, 0]]), name=f"pair{i}") for i, d in enumerate((1.0, 1.5, 2.5))]
    with pytest.raises(ValueError, match=r"data.edge_index of the val split, record 2 \(pair2\): has an edge of "
                                         r"length 2.5 Å, beyond the model's cutoff 2 Å"):
        DeviceBatches(graphs, 2, split="val", max_edge_length=model.supplied_edge_limit)
    DeviceBatches(graphs[:2], 2, max_edge_length=2.0)
    # Periodic images count with their shift: an edge to the next cell is 1 + 3 = 4 Å long.
    periodic = Data(pos=torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), z=torch.ones(2, dtype=torch.long),
                    edge_index=torch.tensor([[1], [0]]), shift=torch.tensor([[1.0, 0.0, 0.0]]),
                    cell=3.0 * torch.eye(3).unsqueeze(0))
    with pytest.raises(ValueError, match=r"record 0: has an edge of length 4 Å"):
        DeviceBatches([periodic], 1, max_edge_length=2.0)
    DeviceBatches([periodic], 1, max_edge_length=4.5)


def test_fit_refuses_supplied_edges_beyond_the_envelope_with_the_device_loader(tmp_path):
    from torch_geometric.utils import dense_to_sparse

    from train_helpers import splits, tiny_config

    data = splits(8, 4, 4)
    for part in (data.train, data.val, data.test):
        for d in part:
            d.edge_index = dense_to_sparse(torch.ones(d.num_nodes, d.num_nodes) - torch.eye(d.num_nodes))[0]
    cfg = tiny_config(tmp_path, max_epochs=1)
    cfg["data"]["loader"] = "device"
    model = EGNN(hidden_channels=8, num_layers=1, out_channels=1, interaction_graph=2.0)
    with pytest.raises(ValueError, match=r"data.edge_index of the (train|val) split, record \d+: has an edge of length"):
        fit(cfg, splits=data, model=model)
