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
shapes train, the next ``--test`` shapes test.

Head: every network predicts a 3-vector ``v`` per point, turned into the sign-free tensor
``v v^T`` (:class:`OuterProduct`, declared ``"tensor"``), divided by its trace and trained
with the squared Frobenius error to ``n n^T`` (``2 (1 - (v . n)^2 / |v|^2)`` for ``v v^T``:
twice the metric); the normal is the principal eigenvector. The global frame average
averages ``R v v^T R^T`` over the frame: averaging ``v`` itself, trained one element at a
time with a sign-free loss, would let the elements disagree on the sign and cancel.
(FA-Local-PointNet averages its vector over its local frames inside, in training too.)

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


class OuterProduct(torch.nn.Module):
    """A network's per-point 3-vector ``v`` as the sign-free tensor ``v v^T``, declared a
    node-level ``"tensor"``: frame averaging then averages ``R v v^T R^T`` over the frame,
    which no sign flip between frame elements can cancel."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    @property
    def outputs(self):
        from equigraph.models.contract import Output

        return {"y": Output("tensor", "node")}

    def forward(self, data):
        v = self.net(data)["y"]
        return {"y": v.unsqueeze(-1) * v.unsqueeze(-2)}


def build(key: str, args) -> torch.nn.Module:
    from equigraph.models import FrameAveraging
    from equigraph.nn.backbones import DGCNN, FALocalPointNet, PointNet

    _, backbone, fa = MODELS[key]
    # The raw backbones' 3 outputs are plain numbers until averaged: declared as such.
    common = dict(out_type="scalar", out_channels=3, level="node", hidden_channels=args.hidden,
                  global_channels=args.global_channels)
    if backbone == "pointnet":
        net = OuterProduct(PointNet(num_layers=3, **common))
    elif backbone == "dgcnn":
        net = OuterProduct(DGCNN(num_layers=3, k=args.k_dgcnn, **common))
    else:
        common.update(out_type="vector")
        net = OuterProduct(FALocalPointNet(k=args.k_local, group="E3", num_layers=2, **common))
    return FrameAveraging(net, group="E3", stochastic=True) if fa else net


# --------------------------------------------------------------------------- data
def load_data(args):
    from equigraph.datasets.point_clouds import NORMAL, SurfaceNormals, random_rotations

    ds = SurfaceNormals(num_shapes=args.train + args.test, num_points=args.points, seed=args.seed)
    pos = ds.pos.float()
    normal = ds.normal.float()
    kinds = torch.arange(len(ds)) % len(ds.kinds)
    test_rot = random_rotations(args.test, torch.Generator().manual_seed(args.seed + 1), dtype=torch.float32)
    assert NORMAL == "normal"
    return {"train": (pos[:args.train], normal[:args.train]), "test": (pos[args.train:], normal[args.train:]),
            "test_rot": test_rot, "test_kinds": kinds[args.train:], "kinds": list(ds.kinds), "cache": str(ds.path)}


def batch_of(pos: torch.Tensor):
    """A PyG batch of clouds ``pos [B, P, 3]`` (positions only: the models read nothing else)."""
    from torch_geometric.data import Batch, Data

    return Batch.from_data_list([Data(pos=p) for p in pos])


def principal_axis(y: torch.Tensor) -> torch.Tensor:
    """Unit eigenvector of the largest eigenvalue of each predicted ``n n^T`` ``[N, 3, 3]``."""
    return torch.linalg.eigh(y.double()).eigenvectors[..., -1]


def normal_error(model, pos, normal, rot=None, batch_size=16) -> torch.Tensor:
    """Per-shape mean of ``1 - (n . n_hat)^2`` ``[S]``, the shapes rotated by ``rot``."""
    model.eval()
    out = []
    with torch.no_grad():
        for a in range(0, pos.size(0), batch_size):
            p, n = pos[a:a + batch_size], normal[a:a + batch_size]
            if rot is not None:
                R = rot[a:a + batch_size]
                p, n = p @ R.transpose(1, 2), n @ R.transpose(1, 2)
            y = model(batch_of(p))["y"]
            n_hat = principal_axis(y).view(n.shape)
            out.append((1 - (n_hat * n.double()).sum(-1).square()).mean(dim=1))
    return torch.cat(out)


# --------------------------------------------------------------------------- train
def train(model, pos, normal, *, rotate: bool, args, seed: int) -> dict:
    from equigraph.datasets.point_clouds import random_rotations

    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    target = normal.unsqueeze(-1) * normal.unsqueeze(-2)  # [S, P, 3, 3]
    S = pos.size(0)
    curve, start = [], time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(S, generator=g)
        rots = random_rotations(S, g, dtype=pos.dtype) if rotate else None
        total = 0.0
        for a in range(0, S, args.batch_size):
            idx = order[a:a + args.batch_size]
            p, t = pos[idx], target[idx]
            if rots is not None:
                R = rots[idx].unsqueeze(1)
                p = p @ R[:, 0].transpose(1, 2)
                t = R @ t @ R.transpose(-1, -2)
            y = model(batch_of(p))["y"].view(t.shape)
            # trace-normalised: 2 (1 - (v.n)^2 / |v|^2) for y = v v^T, scale-free, with a gradient at small v
            trace = y.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None]
            loss = (y / (trace + 1e-8) - t).square().sum((-1, -2)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.numel()
        curve.append({"epoch": epoch, "train_loss": total / S, "wall_s": round(time.perf_counter() - start, 1)})
        print(f"  epoch {epoch:3d} loss {total / S:.4f} ({curve[-1]['wall_s']:.0f} s)", flush=True)
    return {"curve": curve, "train_wall_s": round(time.perf_counter() - start, 1)}


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
    from equigraph.models import FrameAveraging

    pos = data["train"][0][:args.batch_size]
    batch = batch_of(pos)
    rows = []
    variants = []
    for key in ("pointnet", "dgcnn"):
        torch.manual_seed(0)
        net = build(key, args)
        label = MODELS[key][0]
        variants += [(label, "backbone", net, True),
                     (label, "FA, full average (8)", FrameAveraging(net, group="E3", stochastic=False), True),
                     (label, "FA, stochastic (1)", FrameAveraging(net, group="E3", stochastic=True), True)]
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
def run(args):
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    data = load_data(args)
    pos, normal = data["train"]
    tpos, tnormal = data["test"]
    print(f"data: {pos.size(0)} train / {tpos.size(0)} test shapes x {args.points} points "
          f"({time.perf_counter() - t0:.0f} s, cache {data['cache']})", flush=True)
    record = {"command": _command(), "args": vars(args), "kinds": data["kinds"], "models": {}}
    keys = [k for k in MODELS if k in args.models]
    for key in keys:
        label, _, fa = MODELS[key]
        entry = {"label": label}
        # FA models are trained on rotated shapes too unless --fa-once: their canonical inputs are
        # (up to rounding and the random frame element) those of the unrotated shapes
        for train_rot in ("I", "SO(3)"):
            is_fa = fa or key == "fa_local_pointnet"
            if train_rot == "SO(3)" and is_fa and args.fa_once:
                continue
            torch.manual_seed(args.seed)
            model = build(key, args)
            size = sum(p.numel() for p in model.parameters())
            print(f"{label}, trained on {train_rot}: {size} parameters", flush=True)
            info = train(model, pos, normal, rotate=train_rot == "SO(3)", args=args, seed=args.seed + 7)
            tests = {"I": None, "SO(3)": data["test_rot"]} if train_rot == "I" else {"SO(3)": data["test_rot"]}
            start = time.perf_counter()
            for test_rot, rot in tests.items():
                per_shape = normal_error(model, tpos, tnormal, rot, args.batch_size)
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
        "Every network predicts a vector `v` per point; the loss is the squared Frobenius error of "
        "`v v^T / |v|^2` (the averaged tensor over its trace) to `n n^T`, and the frame average averages "
        "`v v^T` (a sign-free head whose average cannot cancel); the normal is the principal eigenvector.",
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
        "copies of the batch, the stochastic one on 1 copy (plus the PCA frames, the replication and the "
        "averaging); time can grow faster than the 8 copies because the 8x larger tensors of one batch leave "
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
