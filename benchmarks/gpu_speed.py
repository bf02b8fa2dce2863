"""Speed of equigraph's EGNN against the original EGNN code's equations, on a GPU when there
is one (else on the CPU), on the same weights and inputs (outputs checked to agree first):
forward (no grad) and a train step (zero_grad, forward, loss, backward, Adam step), plus the
training molecules/s of ``equigraph.train.fit`` on QM9 (issue 12).

Batches:

- ``nbody100`` / ``nbody1000``: 100 / 1000 random 5-particle systems, fully connected,
  EGNN-vel with hidden 64 and 4 layers, edge input ``[q_i q_j, |x_i - x_j|^2]``, MSE on
  positions; the original is ``benchmarks/reference/egnn_original.py`` (``EGNN_vel``).
- ``qm9``: the first 96 molecules of QM9's EGNN train split, the published EGNN QM9 model
  (``configs/qm9_egnn.yaml`` with ``interaction_graph: full``: 15 charge-power features,
  hidden 128, 7 layers, attention, no coordinate update, node MLP, sum, graph MLP), L1 on
  the standardised gap; the original is ``benchmarks/reference/egnn_qm9_original.py``
  (``qm9/models.py`` ``EGNN`` on padded batches with node and edge masks). The shipped
  config (5 Å radius graph with a smooth envelope) is timed alongside.

Each implementation is timed once per round and the rounds are interleaved (medians), so
load changes on a shared machine hit all alike; on CUDA the device is synchronised around
every timing and peak allocated memory is reported. The original uses plain
``torch.optim.Adam``; equigraph is timed with it and with ``Adam(fused=True)`` (its trainer's).

``--trainer-pad GROWTH`` adds two compiled trainer rows side by side, unpadded and with
``data.pad_buckets=GROWTH`` (CUDA graphs on a GPU), and counts the distinct batch shapes of
both over the same epochs (``--batches`` with no names: the trainer rows only).

    python benchmarks/gpu_speed.py --device cuda --compile --trainer-pad 0.1   # the intended run
    python benchmarks/gpu_speed.py --device cpu --threads 1    # CPU fallback
    python benchmarks/gpu_speed.py --quick --compile --loader device
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
import yaml
from torch_geometric.data import Batch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import _results  # noqa: E402
from benchmarks.egnn_speed import (  # noqa: E402
    ORIGINAL, build_egnn_vel, check_agree, compile_impl, make_jobs, resolve_device, speedups, time_jobs,
)
from benchmarks.reference import egnn_qm9_original as qm9_ref  # noqa: E402
from equigraph.data import keys as K  # noqa: E402
from equigraph.models.registry import build_model  # noqa: E402

NAME = "gpu_speed"
CONFIG = ROOT / "configs" / "qm9_egnn.yaml"
BATCHES = {
    "nbody100": dict(kind="nbody", graphs=100, nodes=5, hidden=64, layers=4, cutoff=None, spread=1.0),
    "nbody1000": dict(kind="nbody", graphs=1000, nodes=5, hidden=64, layers=4, cutoff=None, spread=1.0),
    "qm9": dict(kind="qm9", graphs=96, hidden=128, layers=7),
}
#: ``--tiny``: the same code paths on sizes that run in a few seconds (the smoke test).
TINY = {
    "nbody100": dict(BATCHES["nbody100"], graphs=4, hidden=8, layers=2),
    "nbody1000": dict(BATCHES["nbody1000"], graphs=8, hidden=8, layers=2),
    "qm9": dict(BATCHES["qm9"], graphs=6, hidden=8, layers=2),
}
QM9_ORIGINAL = "original EGNN (E_GCL_mask)"
QM9_OURS = "equigraph EGNN"
QM9_SHIPPED = "equigraph EGNN, shipped config (5 Å radius + envelope)"
GPU_PAIRS = (
    ("forward", "forward", "forward"),
    ("train step, both plain Adam", "train step, Adam", "train step, Adam"),
    ("train step, own optimiser (orig. Adam, ours fused Adam)", "train step, Adam", "train step, Adam fused"),
)


def qm9_model_config(**changes) -> dict:
    """The ``model`` section of ``configs/qm9_egnn.yaml`` with ``changes``."""
    return {**yaml.safe_load(CONFIG.read_text())["model"], **changes}


def qm9_dataset(root=None, max_molecules=None, subset="train"):
    """QM9's EGNN-split ``subset`` with the config's target and charge-power features."""
    from equigraph.datasets import QM9
    from equigraph.datasets.registry import build_featurizer

    data_cfg = yaml.safe_load(CONFIG.read_text())["data"]
    return QM9(root=root, target=data_cfg["target"], split=data_cfg["split"], subset=subset,
               max_molecules=max_molecules, transform=build_featurizer(data_cfg["featurizer"]), log=False)


def batch_shapes(dataset, growth: float, epochs: int, batch_size: int = 96, seed: int = 0) -> dict:
    """Distinct ``(graphs, nodes, edges)`` of the shuffled batches of ``dataset`` over ``epochs``
    epochs, unpadded and with ``data.pad_buckets=growth``, on the shipped config's graph: each
    distinct shape is one compilation (static shapes) or one CUDA-graph recording."""
    from equigraph.train.device_loader import DeviceBatches
    from equigraph.train.run import _graph_builder, _padding

    model = build_model(qm9_model_config())
    out = {}
    for name, pad in (("unpadded", None), ("padded", _padding(growth, model))):
        loader = DeviceBatches(dataset, batch_size, shuffle=True, graph=_graph_builder(model), pad=pad)
        torch.manual_seed(seed)
        shapes = {(b.num_graphs, b.num_nodes, b.edge_index.size(1)) for _ in range(epochs) for b in loader}
        out[name] = (len(shapes), epochs * len(loader))
    return out


def padded(batch):
    """The original code's padded batch of ``batch``: ``(h0 [B n, F], x [B n, 3], edges,
    node_mask [B n, 1], edge_mask [B n^2, 1], n)`` with ``n`` the largest molecule; ``h0``
    is the original's ``preprocess_input`` of the padded one-hot and atomic numbers, checked
    equal to equigraph's ``charge_power`` features."""
    counts = torch.bincount(batch[K.BATCH], minlength=batch.num_graphs)
    b, n = batch.num_graphs, int(counts.max())
    atom_mask = torch.arange(n, device=counts.device) < counts.unsqueeze(1)
    pos = batch[K.POS].new_zeros(b, n, 3)
    pos[atom_mask] = batch[K.POS]
    z = batch[K.Z].new_zeros(b, n)
    z[atom_mask] = batch[K.Z]
    species = torch.tensor([1, 6, 7, 8, 9], device=z.device)
    one_hot = (z.unsqueeze(-1) == species).float()
    h0 = qm9_ref.preprocess_input(one_hot, z.float(), charge_power=2, charge_scale=9.0)
    x = batch[K.X].new_zeros(b, n, batch[K.X].size(-1))
    x[atom_mask] = batch[K.X]
    if not torch.allclose(h0, x, atol=1e-6):
        raise RuntimeError("equigraph's charge_power features differ from the original's preprocess_input")
    node_mask, edge_mask = qm9_ref.masks(atom_mask)
    edges = qm9_ref.get_adj_matrix(n, b, device=z.device)
    return h0.view(b * n, -1), pos.view(b * n, 3), edges, node_mask, edge_mask, n


def original_state(ours) -> dict:
    """equigraph's QM9 EGNN weights under the original's parameter names; the readout's
    output scale and shift must be the identity (the original has none)."""
    readout = ours.readout
    if not (bool((readout.scale == 1).all()) and bool((readout.shift == 0).all())):
        raise ValueError("the original EGNN has no output scale or shift: keep equigraph's readout at 1 and 0")
    return {original_name(k): v for k, v in ours.state_dict().items() if k not in ("readout.scale", "readout.shift")}


def original_name(key: str) -> str:
    """The original QM9 EGNN's name of equigraph's parameter ``key``."""
    key = key.replace("convs.", "gcl_").replace("readout.node_net", "node_dec")
    return key.replace("readout.graph_net", "graph_dec")


def build_qm9(cfg, compile_model=False, device="cpu", dataset=None, shipped=True):
    """equigraph's QM9 EGNN (full graph, the published configuration), the original
    ``EGNN`` with the same weights (checked to agree to 1e-4 relative), and with
    ``shipped`` the shipped config's model with the same weights, on the first
    ``cfg["graphs"]`` molecules of ``dataset``. Returns ``(impls, loss_fn, notes)``."""
    dataset = qm9_dataset() if dataset is None else dataset
    batch = Batch.from_data_list([dataset[i] for i in range(cfg["graphs"])]).to(device)
    torch.manual_seed(0)
    ours = build_model(qm9_model_config(hidden_channels=cfg["hidden"], num_layers=cfg["layers"],
                                        interaction_graph="full")).to(device)
    original = qm9_ref.EGNN(in_node_nf=ours.in_channels, in_edge_nf=0, hidden_nf=cfg["hidden"],
                            n_layers=cfg["layers"], attention=True)
    original.load_state_dict(original_state(ours))
    original.to(device)
    h0, x, edges, node_mask, edge_mask, n = padded(batch)
    y = batch[K.Y].view(-1)
    target = (y - y.mean()) / (y - y.mean()).abs().mean()

    def loss_fn(out):
        return torch.nn.functional.l1_loss(out, target)

    impls = {
        QM9_OURS: (ours, lambda: ours(batch)[K.Y].view(-1)),
        QM9_ORIGINAL: (original, lambda: original(h0, x, edges, None, node_mask, edge_mask, n)),
    }
    ref = check_agree(impls, QM9_OURS, tol=1e-4, relative=True)
    ours_edges = ours.graph(batch).edge_index.size(1)
    notes = {"molecules": batch.num_graphs, "atoms": batch.num_nodes, "edges": ours_edges,
             "padded_pairs": edges[0].numel(), "slots": n}
    if shipped:
        torch.manual_seed(0)
        model = build_model(qm9_model_config(hidden_channels=cfg["hidden"], num_layers=cfg["layers"])).to(device)
        params = dict(ours.named_parameters())
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(params[name])
        impls[QM9_SHIPPED] = (model, lambda: model(batch)[K.Y].view(-1))
        notes["shipped_edges"] = model.graph(batch).edge_index.size(1)
    if compile_model:
        fn, notes["compile_s"] = compile_impl(ours, lambda m: m(batch)[K.Y].view(-1), loss_fn, ref)
        impls[QM9_OURS + " + compile"] = (ours, fn)
    return impls, loss_fn, notes


def qm9_splits(root, max_molecules):
    """DataSplits of a QM9 cut to its first ``max_molecules`` molecules (the registry's
    ``qm9`` builder has no such option; used by ``--qm9-max-molecules``)."""
    from equigraph.datasets.registry import DataSplits, TargetInfo

    data_cfg = yaml.safe_load(CONFIG.read_text())["data"]
    parts = {s: qm9_dataset(root, max_molecules, s) for s in ("train", "val", "test")}
    return DataSplits(train=parts["train"], val=parts["val"], test=parts["test"],
                      targets={data_cfg["target"]: TargetInfo(K.Y, "graph", parts["train"].unit)},
                      featurizer=parts["train"].transform)


#: Trainer overrides of the reduced-precision rows.
PRECISIONS = {"bf16-mixed": ["train.precision=bf16-mixed"], "tf32": ["train.matmul_precision=high"]}


def static_overrides(growth: float, cuda: bool) -> list[str]:
    """The bucketed trainer row: batches padded to bucket sizes (``data.pad_buckets``) and the
    model compiled, with CUDA graphs on a GPU (``reduce-overhead``: one recorded graph per
    bucket shape, where unpadded batches would need one per step)."""
    return [f"data.pad_buckets={growth}", "train.compile={mode: reduce-overhead}" if cuda else "train.compile=true"]


def trainer_rate(device, molecules, epochs, threads=None, loader="pyg", compile_model=False, overrides=(),
                 splits=None, out_dir=None):
    """``equigraph.train.fit`` on ``configs/qm9_egnn.yaml`` for ``epochs`` epochs on
    ``molecules`` training molecules (96 validation and test molecules) with ``data.loader``
    ``loader``; returns ``(FitResult, overrides used)``. ``train.compile`` only with
    ``compile_model``."""
    from equigraph.train.run import fit

    out_dir = out_dir or tempfile.mkdtemp(prefix="gpu_speed_")
    cfg = [f"out_dir={out_dir}", f"train.max_epochs={epochs}", "train.progress_bar=false",
           f"train.accelerator={'gpu' if device.type == 'cuda' else 'cpu'}"]
    if splits is None:
        cfg += [f"data.max_train={molecules}", "data.max_val=96", "data.max_test=96"]
    if device.type == "cpu":
        # Worker processes would compete with the timed process for the CPU's cores.
        cfg.append("data.num_workers=0")
        if threads is not None:
            cfg.append(f"train.num_threads={threads}")
    cfg.append(f"data.loader={loader}")
    if compile_model:
        cfg.append("train.compile=true")
    cfg += list(overrides)
    return fit(str(CONFIG), cfg, splits=splits), cfg


def run_batch(key, cfg, device, repeats, inner, compile_model, dataset=None):
    """Timings ``{(impl, mode): ms}``, peaks ``{(impl, mode): MiB}``, notes, the original's
    name and equigraph's names for one batch."""
    if cfg["kind"] == "nbody":
        impls, target, notes = build_egnn_vel(cfg, compile_model, device=device, dense=False)
        loss_fn = lambda out: torch.nn.functional.mse_loss(out, target)  # noqa: E731
        original = ORIGINAL
    else:
        impls, loss_fn, notes = build_qm9(cfg, compile_model, device=device, dataset=dataset)
        original = QM9_ORIGINAL
    ms, peaks = time_jobs(make_jobs(impls, loss_fn, backward=False), repeats, inner, device)
    mines = [n for n in ("equigraph EGNN", "equigraph EGNN + compile") if n in impls]
    return ms, peaks, notes, original, mines


def label_of(key, cfg, notes, device, threads):
    where = "CUDA" if device.type == "cuda" else f"CPU, {threads or torch.get_num_threads()} thread(s)"
    if cfg["kind"] == "nbody":
        return (f"N-body {cfg['graphs']} x {cfg['nodes']} nodes, {notes['edges']} edges, hidden {cfg['hidden']}, "
                f"{cfg['layers']} layers, {where}")
    return (f"QM9 {notes['molecules']} molecules ({notes['atoms']} atoms), full graph {notes['edges']} edges "
            f"(original: {notes['padded_pairs']} padded pairs), hidden {cfg['hidden']}, {cfg['layers']} layers, "
            f"{where}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="CPU intra-op threads (default: torch's)")
    parser.add_argument("--batches", nargs="*", default=list(BATCHES), choices=list(BATCHES),
                        help="model batches to time (none: the trainer rows only)")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument("--tiny", action="store_true", help="tiny models and batches (the smoke test)")
    parser.add_argument("--compile", action="store_true", help="also equigraph + torch.compile rows of the batches")
    parser.add_argument("--loader", default="both", choices=["pyg", "device", "both"],
                        help="the trainer's data.loader (both: one row each, side by side)")
    parser.add_argument("--trainer-molecules", type=int, default=None,
                        help="training molecules of the trainer row (default: 20000 on CUDA, 960 on CPU)")
    parser.add_argument("--trainer-epochs", type=int, default=2)
    parser.add_argument("--trainer-compile", action="store_true",
                        help="train.compile in the trainer rows (a short run mostly times the compilation)")
    parser.add_argument("--trainer-precision", nargs="*", default=["bf16-mixed", "tf32"], choices=list(PRECISIONS),
                        help="reduced precisions of extra trainer rows beside float32 (tf32 only on CUDA)")
    parser.add_argument("--trainer-pad", type=float, default=None, metavar="GROWTH",
                        help="also two compiled trainer rows side by side: unpadded, and padded with "
                             "data.pad_buckets=GROWTH (with CUDA graphs on a GPU)")
    parser.add_argument("--shape-molecules", type=int, default=20000,
                        help="first QM9 molecules (about 76%% of them in the train split) of the batch-shape "
                             "count of --trainer-pad (0: skip it)")
    parser.add_argument("--trainer-override", action="append", default=[], metavar="KEY=VALUE",
                        help="extra config override of the trainer row (repeatable)")
    parser.add_argument("--no-trainer", dest="trainer", action="store_false", help="skip the trainer row")
    parser.add_argument("--qm9-root", default=None, help="QM9 folder (default: equigraph's cache)")
    parser.add_argument("--qm9-max-molecules", type=int, default=None,
                        help="use only QM9's first molecules (tests), for the batch and the trainer")
    parser.add_argument("--name", default=NAME, help="results/NAME.json and NAME.md")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be a positive int, got {args.threads}")
        torch.set_num_threads(args.threads)
    cuda = device.type == "cuda"
    sizes = TINY if args.tiny else BATCHES
    dataset = None
    if "qm9" in args.batches and (args.qm9_root or args.qm9_max_molecules):
        dataset = qm9_dataset(args.qm9_root, args.qm9_max_molecules)

    rows, lines = [], []
    for key in args.batches:
        cfg = sizes[key]
        if args.quick:
            repeats, inner = 3, 1
        elif cuda:
            repeats, inner = 25, 10
        else:
            repeats, inner = {"nbody100": (21, 5), "nbody1000": (11, 1), "qm9": (7, 1)}[key]
        ms, peaks, notes, original, mines = run_batch(key, cfg, device, repeats, inner, args.compile, dataset)
        label = label_of(key, cfg, notes, device, args.threads)
        print(label, notes, flush=True)
        for (name, mode), value in ms.items():
            extra = f"  peak {peaks[(name, mode)]:8.1f} MiB" if peaks else ""
            print(f"  {name:55s} {mode:24s} {value:9.2f} ms{extra}", flush=True)
            rows.append(_results.row(name, label, mode, round(value, 3), "ms"))
        for (name, mode), value in peaks.items():
            rows.append(_results.row(name, label, f"peak memory, {mode}", round(value, 1), "MiB"))
        for mine, metric, ratio in speedups(ms, original, mines, GPU_PAIRS):
            rows.append(_results.row(f"speed-up: {mine} vs original", label, metric, round(ratio, 3), "x"))
            print(f"  speed-up {mine:30s} {metric:55s} {ratio:6.2f}x", flush=True)
        if "compile_s" in notes:
            lines.append(f"- {label}: torch.compile took {notes['compile_s']} s (forward + backward graphs).")
        if "shipped_edges" in notes:
            lines.append(f"- {label}: the shipped config's 5 Å radius graph has {notes['shipped_edges']} edges.")

    if args.trainer:
        molecules = args.trainer_molecules or (20000 if cuda else 960)
        splits = None
        overrides = list(args.trainer_override)
        if args.qm9_max_molecules:
            splits = qm9_splits(args.qm9_root, args.qm9_max_molecules)
            molecules = len(splits.train)
        if args.tiny:
            tiny = TINY["qm9"]
            overrides = [f"model.hidden_channels={tiny['hidden']}", f"model.num_layers={tiny['layers']}",
                         "data.batch_size=4", *overrides]
        loaders = ("pyg", "device") if args.loader == "both" else (args.loader,)
        # Reduced precision only as an explicit option, with its effect on accuracy measured
        # beside float32 (same seed, same batches): TF32 exists on GPUs only.
        precisions = [("float32", [])] + [(p, PRECISIONS[p]) for p in args.trainer_precision if cuda or p != "tf32"]
        runs = [(loader, "float32", [], args.trainer_compile) for loader in loaders]
        runs += [(loaders[-1], name, extra, args.trainer_compile) for name, extra in precisions[1:]]
        if args.trainer_pad is not None:
            if not args.trainer_compile:
                runs.append(("device", "float32", [], True))
            runs.append(("device", "float32", static_overrides(args.trainer_pad, cuda), False))
        for loader, precision, extra, compiled in runs:
            result, used = trainer_rate(device, molecules, 1 if args.tiny else args.trainer_epochs, args.threads,
                                        loader, compiled, [*overrides, *extra], splits)
            where = "CUDA" if cuda else f"CPU, {args.threads or torch.get_num_threads()} thread(s)"
            speed = ", train.compile" if compiled else ""
            if any(o.startswith("data.pad_buckets=") for o in extra):
                speed = f", data.pad_buckets={args.trainer_pad}, {extra[-1].replace('train.compile=true', 'train.compile')}"
            label = (f"equigraph train configs/qm9_egnn.yaml, {result.num_train} train molecules, {result.epochs} "
                     f"epoch(s), data.loader={loader}{speed}, {precision}, {where}")
            print(label, flush=True)
            print(f"  {result.graphs_per_second:.1f} molecules/s, {result.seconds_per_epoch:.2f} s/epoch, "
                  f"validation MAE {result.val_mae:.2f} {result.unit}", flush=True)
            rows.append(_results.row("equigraph train (fit)", label, "training molecules/s",
                                     round(result.graphs_per_second, 1), "graphs/s"))
            rows.append(_results.row("equigraph train (fit)", label, "s per epoch (median)",
                                     round(result.seconds_per_epoch, 3), "s"))
            rows.append(_results.row("equigraph train (fit)", label, "validation MAE (best epoch)",
                                     round(result.val_mae, 4), result.unit))
            lines.append(f"- Trainer row: `equigraph.train.run.fit(configs/qm9_egnn.yaml, {used[1:]})`.")
        if args.trainer_pad is not None and args.shape_molecules:
            shape_data = qm9_dataset(args.qm9_root, args.shape_molecules)
            epochs = args.trainer_epochs
            counts = batch_shapes(shape_data, args.trainer_pad, epochs)
            setting = (f"QM9 train split, first {len(shape_data)} molecules, batch 96, {epochs} shuffled epochs, "
                       "shipped config's 5 Å graph")
            for name, (distinct, total) in counts.items():
                label = name if name == "unpadded" else f"data.pad_buckets={args.trainer_pad}"
                rows.append(_results.row(f"batches, {label}", setting, "distinct batch shapes", distinct, "shapes"))
                rows.append(_results.row(f"batches, {label}", setting, "batches", total, "batches"))
                print(f"  {setting}: {label}: {distinct} distinct shapes in {total} batches", flush=True)
            lines.append(f"- Batch shapes: `benchmarks/gpu_speed.py:batch_shapes` iterates the device loader over "
                         f"{len(shape_data)} QM9 training molecules without a model; a shape is (graphs, atoms, "
                         "edges), one compilation with static shapes or one CUDA-graph recording each.")
        lines += [
            "",
            "Trainer rows: the shipped config (5 Å radius graph + envelope, batch 96); molecules/s is "
            "`FitResult.graphs_per_second` over all training epochs (the first includes warm-up and, compiled, "
            "the compilation), s per epoch the median epoch. Every row sees the same batches in the same order "
            "(same seed), so equal validation MAE means the same training; `device` collates each split once "
            "before training (not timed in molecules/s)."
            + (" `data.pad_buckets` pads every batch to bucket sizes with extra graphs (at most the given "
               "fraction of padding) and scores the real molecules only: compare its validation MAE with the "
               "unpadded rows' (equal up to float rounding when nothing else differs). Static shapes are for CUDA graphs (`mode: reduce-overhead` on a GPU); on a "
               "CPU the padding only adds work." if args.trainer_pad is not None else ""),
        ]

    where = (f"on the GPU ({torch.cuda.get_device_name(device)})." if cuda else
             "on the CPU: these are CPU numbers, because no GPU was lent to the session that ran this. "
             "The script is meant for `python benchmarks/gpu_speed.py --device cuda`.")
    batch_notes = [
        "Ratios are the original code's median time divided by equigraph's (above 1: equigraph faster). "
        "Same weights and inputs for both (outputs checked to agree: N-body to 1e-4, QM9 to 1e-4 relative). "
        "The original uses plain `torch.optim.Adam` as in its repository; equigraph's trainer uses "
        "`Adam(fused=True)`. Medians over interleaved rounds"
        + (", with `torch.cuda.synchronize()` around every timing; peak memory is "
           "`torch.cuda.max_memory_allocated()` over one call." if cuda else "."),
        "",
        "QM9: equigraph's model is `configs/qm9_egnn.yaml` with `model.interaction_graph=full`, the published "
        "EGNN configuration; it computes the same function as the original `qm9/models.py` EGNN (charge-power "
        "features, squared distance as the only edge input, attention, no coordinate update, `node_dec`, "
        "masked sum, `graph_dec`). equigraph sends each molecule's n(n-1) real pairs, built inside its "
        "forward (timed); the original computes all B n^2 pairs of its padded batch (self pairs and padding "
        "masked to zero, as in its code), with edges and masks given (its per-batch Python `get_adj_matrix` "
        "loop is left out). The shipped config differs from the published model in its graph (5 Å radius "
        "instead of all pairs) and multiplies messages by a smooth cutoff envelope: its row is a different "
        "function and has no speed-up row.",
        "",
    ] if args.batches else []
    notes = "\n".join([f"Measured {where}", "", *batch_notes, *lines])
    path = _results.write(args.name, rows, notes)
    print(path)
    return path


if __name__ == "__main__":
    main()
