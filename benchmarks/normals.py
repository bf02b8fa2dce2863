"""Normal estimation with and without frame averaging (Puny et al., "Frame Averaging for
Invariant and Equivariant Network Design", ICLR 2022, Sec. 5.2 and Table 1), on a CPU budget.

Protocol: predict the unoriented normal of every point of a 512-point cloud; the metric is
the mean over points and test shapes of ``1 - (n . n_hat)^2``. Three settings, training
rotation / test rotation: ``I/I`` (shapes as generated, axis-aligned), ``I/SO(3)``
(trained as generated, each test shape under a fixed random rotation) and ``SO(3)/SO(3)``
(a fresh random rotation of every training shape at every epoch, rotated test shapes).
Models: PointNet and DGCNN as they are, and wrapped in :class:`equigraph.models.FrameAveraging`
(PCA frames, group E(3): 8 elements; one random element per shape in training steps, the
full average in evaluation), and FA-Local-PointNet (local PCA frames, 8 elements per point,
averaged in training too).

Data: :class:`equigraph.datasets.point_clouds.SurfaceNormals` (exact normals of analytic,
randomly deformed surfaces; the ABC set is not on this machine), the first ``--train``
shapes train, the next ``--test`` shapes test, the next ``--val`` shapes validate (the
trainer keeps the epoch of the lowest validation loss). The rotated copies of a setting
are data preparation (:class:`Rotated`); every model trains through
:func:`equigraph.train.fit` with the target ``normal`` (model output ``y``) and the loss
``unoriented_normal`` (``1 - (y . n)^2 / (|y|^2 |n|^2)``, the metric itself).

Head: PointNet, DGCNN and FA-Local-PointNet predict ``y`` per point directly. The global
frame average cannot average ``y`` itself: trained one element at a time with a sign-free
loss, the elements may disagree on the sign and cancel. FA-PointNet / FA-DGCNN therefore
average the sign-free tensor ``v v^T`` (:class:`OuterProduct`, declared ``"tensor"``), and
:class:`PrincipalAxis` reads its principal axis as ``y`` (exactly ``v`` up to sign and
length in a one-element training step). The metric takes ``n_hat = y / |y|``.

Costs: forward + backward time of one training batch and the activations saved for
backward, of each backbone alone, wrapped with the full average and with the stochastic
(one-element) average.

    python benchmarks/normals.py run        # trains, evaluates, writes logs/normals.json and results/normals.*
    python benchmarks/normals.py report     # re-renders results/normals.* from logs/normals.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import _results  # noqa: E402

LOGS = Path(__file__).resolve().parent / "logs"
LOG = LOGS / "normals.json"
NAME = "normals"
SETTINGS = ("I/I", "I/SO(3)", "SO(3)/SO(3)")
#: model key -> (label, backbone, frame averaging)
MODELS = {
    "pointnet": ("PointNet", "pointnet", False),
    "dgcnn": ("DGCNN", "dgcnn", False),
    "fa_pointnet": ("FA-PointNet", "pointnet", True),
    "fa_local_pointnet": ("FA-Local-PointNet", "fa_local_pointnet", False),
    "fa_dgcnn": ("FA-DGCNN", "dgcnn", True),
}


def build(key: str, args, stochastic: bool = True) -> torch.nn.Module:
    from equigraph.models import FrameAveraging
    from equigraph.nn.backbones import DGCNN, FALocalPointNet, PointNet
    from equigraph.nn.frames.heads import OuterProduct, PrincipalAxis

    _, backbone, fa = MODELS[key]
    # The raw backbones' 3 outputs are plain numbers until averaged: declared as such.
    common = dict(out_type="scalar", out_channels=3, level="node", hidden_channels=args.hidden,
                  global_channels=args.global_channels)
    if backbone == "pointnet":
        net = PointNet(num_layers=3, **common)
    elif backbone == "dgcnn":
        net = DGCNN(num_layers=3, k=args.k_dgcnn, **common)
    else:
        common.update(out_type="vector")
        return FALocalPointNet(k=args.k_local, group="E3", num_layers=2, **common)
    if not fa:
        return net
    return PrincipalAxis(FrameAveraging(OuterProduct(net), group="E3", stochastic=stochastic))


# --------------------------------------------------------------------------- data
class Rotated(torch.utils.data.Dataset):
    """Copies of ``items`` under rotations: ``rot [S, 3, 3]`` fixed ones, or (``rot=None``)
    a fresh uniform random rotation at every access, so every training epoch sees new ones."""

    def __init__(self, items, rot=None, seed: int = 0):
        self.items, self.rot = items, rot
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        from equigraph.datasets.point_clouds import random_rotations

        d = self.items[i]
        R = self.rot[i] if self.rot is not None else random_rotations(1, self.generator, dtype=d.pos.dtype)[0]
        out = d.clone()
        out.pos, out.normal = d.pos @ R.T, d.normal @ R.T
        return out

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def load_data(args):
    from equigraph.datasets.point_clouds import NORMAL, SurfaceNormals, random_rotations

    # Validation shapes come after the test shapes: train and test are the shapes of earlier runs.
    ds = SurfaceNormals(num_shapes=args.train + args.test + args.val, num_points=args.points, seed=args.seed)
    assert NORMAL == "normal"
    items = []
    for i in range(len(ds)):
        d = ds[i]
        d.pos, d.normal = d.pos.float(), d.normal.float()
        items.append(d)
    kinds = torch.arange(len(ds)) % len(ds.kinds)
    test_rot = random_rotations(args.test, torch.Generator().manual_seed(args.seed + 1), dtype=torch.float32)
    val_rot = random_rotations(args.val, torch.Generator().manual_seed(args.seed + 2), dtype=torch.float32)
    a, b = args.train, args.train + args.test
    return {"train": items[:a], "test": items[a:b], "val": items[b:], "test_rot": test_rot, "val_rot": val_rot,
            "test_kinds": kinds[a:b], "kinds": list(ds.kinds), "cache": str(ds.path)}


def splits_for(data, train_rot: str, seed: int):
    """The trainer's splits of one setting: training shapes as generated (``I``) or under
    fresh rotations every epoch (``SO(3)``); validation and test shapes in the same rotation
    regime (fixed rotations)."""
    from equigraph.data import keys as K
    from equigraph.datasets.point_clouds import NORMAL
    from equigraph.datasets.registry import DataSplits, TargetInfo

    if train_rot == "I":
        train, val, test = data["train"], data["val"], data["test"]
    else:
        train = Rotated(data["train"], None, seed)
        val, test = Rotated(data["val"], data["val_rot"]), Rotated(data["test"], data["test_rot"])
    return DataSplits(train=train, val=val, test=test, targets={"normal": TargetInfo(NORMAL, "node", "", output=K.Y)})


def config_of(key: str, args, out_dir: str) -> dict:
    """The run configuration: Adam at a constant learning rate, as in the paper's setup here."""
    return {
        "seed": args.seed, "out_dir": out_dir, "model": {"name": key},
        "data": {"name": "surface_normals", "batch_size": args.batch_size, "eval_batch_size": args.batch_size},
        "targets": {"normal": {"output": "y", "loss": "unoriented_normal"}},
        "train": {"max_epochs": args.epochs, "optimizer": "adam", "lr": args.lr, "weight_decay": 0.0,
                  "scheduler": "none", "accelerator": "cpu", "progress_bar": False, "num_threads": args.threads,
                  "log_every_n_steps": 10},
    }


def normal_error(model, items, batch_size=16) -> torch.Tensor:
    """Per-shape mean of ``1 - (n . n_hat)^2`` ``[S]``, ``n_hat`` the direction of the model's ``y``."""
    from torch_geometric.loader import DataLoader

    model.eval()
    out = []
    with torch.no_grad():
        for batch in DataLoader(items, batch_size=batch_size):
            y = model(batch)["y"].double()
            n = batch.normal.double()
            cos2 = (y * n).sum(-1).square() / (y.square().sum(-1) * n.square().sum(-1)).clamp_min(1e-300)
            err = 1 - cos2
            out.append(torch.zeros(batch.num_graphs, dtype=err.dtype).index_add_(0, batch.batch, err)
                       / torch.bincount(batch.batch, minlength=batch.num_graphs))
    return torch.cat(out)


# --------------------------------------------------------------------------- costs
def _saved_bytes(fn) -> int:
    """Bytes of the tensors autograd saves for backward while ``fn`` runs (storages counted once)."""
    seen, total = set(), [0]

    def pack(t):
        try:
            key = t.untyped_storage().data_ptr()
            if key not in seen:
                seen.add(key)
                total[0] += t.untyped_storage().nbytes()
        except RuntimeError:
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total[0]


def costs(args, data) -> list[dict]:
    """Time of one training step's forward + backward and saved activations: each backbone,
    wrapped with the full average, and with the stochastic one."""
    from torch_geometric.data import Batch

    batch = Batch.from_data_list(data["train"][:args.batch_size])
    rows = []
    variants = []
    for key in ("pointnet", "dgcnn"):
        label = MODELS[key][0]
        torch.manual_seed(0)
        net = build(key, args)
        torch.manual_seed(0)
        full = build(f"fa_{key}", args, stochastic=False)
        torch.manual_seed(0)
        one = build(f"fa_{key}", args, stochastic=True)
        variants += [(label, "backbone", net, True), (label, "FA, full average (8)", full, True),
                     (label, "FA, stochastic (1)", one, True)]
    torch.manual_seed(0)
    variants.append(("FA-Local-PointNet", "local frames (8 per point)", build("fa_local_pointnet", args), True))
    times = {(m, v): [] for m, v, _, _ in variants}
    mem = {}

    def step(model):
        model.train()
        model.zero_grad(set_to_none=True)
        model(batch)["y"].square().sum().backward()

    for m, v, model, _ in variants:
        step(model)  # warm-up
        mem[(m, v)] = _saved_bytes(lambda model=model: model.train() and model(batch)["y"].sum())
    for _ in range(args.cost_rounds):  # interleaved: load changes hit every variant alike
        for m, v, model, _ in variants:
            start = time.perf_counter()
            step(model)
            times[(m, v)].append((time.perf_counter() - start) * 1e3)
    setting = f"train step, batch {args.batch_size} x {args.points} points, {torch.get_num_threads()} thread(s)"
    for m, v, _, _ in variants:
        ms = statistics.median(times[(m, v)])
        base = statistics.median(times[(m, "backbone")]) if (m, "backbone") in times else None
        base_mem = mem.get((m, "backbone"))
        rows.append(_results.row(f"{m}: {v}", setting, "forward+backward", round(ms, 1), "ms",
                                 ratio_to_backbone=round(ms / base, 2) if base else ""))
        rows.append(_results.row(f"{m}: {v}", setting, "saved activations", round(mem[(m, v)] / 2**20, 1), "MiB",
                                 ratio_to_backbone=round(mem[(m, v)] / base_mem, 2) if base_mem else ""))
    return rows


# --------------------------------------------------------------------------- run
def train_one(key: str, train_rot: str, data, args, out_dir: str):
    """Train ``key`` on setting ``train_rot`` with :func:`equigraph.train.fit`; the model
    comes back holding the trainer's best weights (by validation loss)."""
    from equigraph.train import fit, read_metrics

    torch.manual_seed(args.seed)
    model = build(key, args)
    start = time.perf_counter()
    result = fit(config_of(key, args, out_dir), splits=splits_for(data, train_rot, args.seed + 7), model=model)
    wall = time.perf_counter() - start
    series = read_metrics(result.metrics_csv)
    val = dict(series.get("val_loss", []))
    curve = [{"epoch": e, "train_loss": v, "val_loss": val.get(e)} for e, v in series.get("train_loss", [])]
    for point in curve:
        print(f"  epoch {point['epoch']:3d} train loss {point['train_loss']:.4f} val loss {point['val_loss']:.4f}",
              flush=True)
    best = min(val, key=val.get) if val else None
    info = {"curve": curve, "best_epoch": best, "train_wall_s": round(wall, 1),
            "seconds_per_epoch": round(result.seconds_per_epoch, 2),
            "num_parameters": result.num_parameters}
    return model, info


def run(args):
    import tempfile

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    data = load_data(args)
    print(f"data: {len(data['train'])} train / {len(data['val'])} val / {len(data['test'])} test shapes x "
          f"{args.points} points ({time.perf_counter() - t0:.0f} s, cache {data['cache']})", flush=True)
    record = {"command": _command(), "args": vars(args), "kinds": data["kinds"], "models": {}}
    keys = [k for k in MODELS if k in args.models]
    test_sets = {"I": data["test"], "SO(3)": Rotated(data["test"], data["test_rot"])}
    with tempfile.TemporaryDirectory(prefix="normals_runs_") as out_dir:
        for key in keys:
            label, _, fa = MODELS[key]
            entry = {"label": label}
            is_fa = fa or key == "fa_local_pointnet"
            for train_rot in ("I", "SO(3)"):
                if train_rot == "SO(3)" and is_fa and args.fa_once:
                    continue
                print(f"{label}, trained on {train_rot}", flush=True)
                model, info = train_one(key, train_rot, data, args, out_dir)
                tests = ("I", "SO(3)") if train_rot == "I" else ("SO(3)",)
                start = time.perf_counter()
                for test_rot in tests:
                    per_shape = normal_error(model, test_sets[test_rot], args.batch_size)
                    by_kind = {data["kinds"][k]: float(per_shape[data["test_kinds"] == k].mean())
                               for k in range(len(data["kinds"])) if bool((data["test_kinds"] == k).any())}
                    setting = f"{train_rot}/{test_rot}"
                    entry[setting] = {"error": float(per_shape.mean()), "by_kind": by_kind}
                    print(f"  {setting}: 1 - (n.n_hat)^2 = {per_shape.mean():.4f}", flush=True)
                if is_fa and args.fa_once and train_rot == "I":
                    entry["SO(3)/SO(3)"] = dict(entry["I/SO(3)"], reused_from="I-trained weights (--fa-once)")
                info["eval_s"] = round(time.perf_counter() - start, 1)
                counts = [int(m.num_degenerate) for m in model.modules() if hasattr(m, "num_degenerate")]
                info["degenerate_frames"] = sum(counts) if counts else None
                entry[f"train_{train_rot}"] = info
            record["models"][key] = entry
            _dump(record)
    if not args.skip_costs:
        record["cost_rows"] = costs(args, data)
    record["total_wall_s"] = round(time.perf_counter() - t0, 1)
    _dump(record)
    if not args.tag:
        report()


def _command() -> str:
    return "python benchmarks/normals.py " + " ".join(sys.argv[1:])


def _log_path(tag=None) -> Path:
    return LOG if not tag else LOGS / f"normals_{tag}.json"


def _dump(record):
    LOGS.mkdir(parents=True, exist_ok=True)
    path = _log_path(record["args"].get("tag"))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(path)


def report(args=None):
    record = json.loads(LOG.read_text())
    a = record["args"]
    rows = []
    for key, entry in record["models"].items():
        for setting in SETTINGS:
            if setting not in entry:
                continue
            extra = {"train_min": round(entry[f"train_{setting.split('/')[0]}"]["train_wall_s"] / 60, 1)}
            if entry[setting].get("reused_from"):
                extra["note"] = "I-trained weights"
                extra["train_min"] = ""
            rows.append(_results.row(entry["label"], setting, "1 - (n.n_hat)^2", round(entry[setting]["error"], 4), "",
                                     **extra))
    gaps, worst = [], []
    for key, entry in record["models"].items():
        if "I/I" in entry and "I/SO(3)" in entry:
            gaps.append(f"{entry['label']} {entry['I/I']['error']:.3f} -> {entry['I/SO(3)']['error']:.3f}")
            before, after = entry["I/I"]["by_kind"], entry["I/SO(3)"]["by_kind"]
            kind = max(after, key=lambda k: after[k] - before[k])
            worst.append(f"{entry['label']} {kind} {before[kind]:.3f} -> {after[kind]:.3f}")
    rows += record.get("cost_rows", [])
    kinds = ", ".join(record["kinds"])
    notes = "\n".join([
        f"Mean over points and test shapes of `1 - (n . n_hat)^2` (0: exact, 2/3: a random direction), "
        f"{a['train']} training and {a['test']} test shapes of {a['points']} points from "
        f"`equigraph.datasets.point_clouds.SurfaceNormals` (seed {a['seed']}; kinds {kinds}, one in "
        "turn; exact normals of randomly deformed analytic surfaces, not the ABC set of the paper, which is not "
        "on this machine). Settings are train rotation / test rotation: `SO(3)` is a uniform random rotation "
        "(a fixed one per test shape; a fresh one per training shape and epoch).",
        "",
        f"Training: {a['epochs']} epochs, Adam lr {a['lr']}, batch {a['batch_size']}, seed {a['seed']}, "
        f"{a['threads']} thread(s); hidden {a['hidden']}, global feature {a['global_channels']}; PointNet 3 "
        f"point layers; DGCNN 3 EdgeConv layers, k = {a['k_dgcnn']}, dynamic graphs; FA-Local-PointNet k = "
        f"{a['k_local']}. FA-PointNet / FA-DGCNN: `FrameAveraging(backbone, group='E3', stochastic=True)`: one "
        "random frame element of 8 per shape in training steps, the full 8-element average in evaluation. "
        "Every model trains through `equigraph.train.fit` (Adam at a constant learning rate, the epoch of the "
        f"lowest validation loss on {a.get('val', '?')} further shapes in the setting's training rotation is kept) "
        "on the target `normal` with the loss `unoriented_normal`, `1 - (y . n)^2 / (|y|^2 |n|^2)` per point, the "
        "metric itself. PointNet, DGCNN and FA-Local-PointNet predict `y` directly; FA-PointNet / FA-DGCNN average "
        "the sign-free `v v^T` of the backbone's `v` over the frame (an average of `v` could cancel between "
        "elements of opposite sign) and output its principal axis (a column of `(T / tr T)^32`) as `y`. "
        "`n_hat = y / |y|`.",
        "",
        "I/I -> I/SO(3): " + "; ".join(gaps) + ". The claim of the paper's Table 1: frame-averaged models lose "
        "(almost) nothing when tested on rotated shapes, the plain backbones degrade unless trained on rotations. "
        "The kind that degrades most (I/I -> I/SO(3), per-kind means in the log): " + "; ".join(worst) + ".",
        "",
        ("FA models were trained once (`--fa-once`): their SO(3)/SO(3) rows reuse the I-trained weights, "
         "since a rotated training shape has the same canonical frame inputs. " if a.get("fa_once") else "")
        + f"`train_min`: wall minutes of that model's training on a 2-core machine shared with other jobs. "
        f"Whole run: {record.get('total_wall_s', 0) / 60:.1f} min. Command: `{record['command']}`.",
        "",
        "Costs: median of interleaved rounds of one training step (forward + backward) on one batch; "
        "`saved activations` are the bytes autograd keeps for backward (storages counted once); "
        "`ratio_to_backbone` divides by the backbone's own number. The full average runs the backbone on 8 "
        "copies of the batch, the stochastic one on 1 copy (plus the PCA frames, the replication, the "
        "averaging and the trained `v v^T` head with its principal-axis readout: the models as trained here); time can grow faster than the 8 copies because the 8x larger tensors of one batch leave "
        "the allocator's cache for fresh pages on this machine.",
        "",
        "![errors](normals.png)",
    ])
    _results.write(NAME, rows, notes, extra={"log": "benchmarks/logs/normals.json"})
    _plot(record)


def _plot(record):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = list(record["models"].values())
    fig, ax = plt.subplots(figsize=(7.5, 4))
    width = 0.26
    for i, setting in enumerate(SETTINGS):
        xs = [j + (i - 1) * width for j in range(len(entries))]
        vals = [e.get(setting, {}).get("error", float("nan")) for e in entries]
        ax.bar(xs, vals, width, label=f"train/test {setting}")
    ax.set_xticks(range(len(entries)))
    ax.set_xticklabels([e["label"] for e in entries], fontsize=8)
    ax.set_ylabel("1 - (n . n_hat)^2 (lower is better)")
    ax.set_title("Normal estimation: rotated test shapes")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(_results.RESULTS / f"{NAME}.png", dpi=120)
    plt.close(fig)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--train", type=int, default=280)
    r.add_argument("--test", type=int, default=70)
    r.add_argument("--val", type=int, default=14, help="validation shapes (the trainer keeps the best epoch by them)")
    r.add_argument("--points", type=int, default=512)
    r.add_argument("--epochs", type=int, default=8)
    r.add_argument("--batch-size", type=int, default=8)
    r.add_argument("--lr", type=float, default=2e-3)
    r.add_argument("--hidden", type=int, default=32)
    r.add_argument("--global-channels", type=int, default=128)
    r.add_argument("--k-dgcnn", type=int, default=10)
    r.add_argument("--k-local", type=int, default=10)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    r.add_argument("--fa-once", action="store_true", help="train FA models on I only; reuse them for SO(3)/SO(3)")
    r.add_argument("--skip-costs", action="store_true")
    r.add_argument("--cost-rounds", type=int, default=5)
    r.add_argument("--tag", default=None, help="write logs/normals_<TAG>.json and leave the results alone")
    sub.add_parser("report")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    {"run": run, "report": report}[args.cmd](args)


if __name__ == "__main__":
    main()
