"""The charged 5-body benchmark of the EGNN paper (Satorras et al. 2021, Table 2):
MSE of the positions 1000 steps ahead, on the test set, for the model with the best
validation MSE.

Protocol (``main_nbody.py`` of https://github.com/vgsatorras/egnn): 3,000 training
trajectories, 2,000 validation, 2,000 test (:class:`equigraph.datasets.NBody`, frames 30 ->
40); batch 100, Adam, lr 5e-4, weight decay 1e-12, up to 10,000 epochs, validation every 5
epochs; EGNN with 4 layers of 64 channels, node input the speed, edge input ``[q_i q_j,
|x_i - x_j|^2]`` (the original's ``in_edge_nf=2``).

Subcommands (each one writes ``benchmarks/logs/nbody_<name>.json`` and then re-renders
``benchmarks/results/nbody.{json,md,png}`` from every log present)::

    python benchmarks/nbody.py train --model egnn --max-minutes 75   # the long run
    python benchmarks/nbody.py train --model gnn --max-minutes 20
    python benchmarks/nbody.py train --model rf --max-minutes 15
    python benchmarks/nbody.py linear
    python benchmarks/nbody.py speed
    python benchmarks/nbody.py report
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch
from torch_geometric.data import Data

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _results  # noqa: E402
from benchmarks.reference.nbody_baselines import GNN, RadialFieldVel  # noqa: E402
from equigraph.data import keys as K  # noqa: E402
from equigraph.datasets import NBody  # noqa: E402
from equigraph.models import EGNN  # noqa: E402

LOGS = Path(__file__).resolve().parent / "logs"
NAME = "nbody"
#: Test MSE of the EGNN paper, Table 2.
PUBLISHED = {"linear": 0.0819, "se3_transformer": 0.0244, "tfn": 0.0155, "gnn": 0.0107, "rf": 0.0104,
             "egnn": 0.0071}
LABELS = {"linear": "Linear", "se3_transformer": "SE(3)-Transformer", "tfn": "TFN", "gnn": "GNN",
          "rf": "Radial Field", "egnn": "EGNN"}


# --------------------------------------------------------------------------- data
class Split:
    """A split held as stacked tensors; ``batch(idx)`` builds a PyG ``Data`` for a set of
    systems by indexing, which is much cheaper than a ``DataLoader`` collating 5-node graphs."""

    def __init__(self, dataset):
        items = [dataset[i] for i in range(len(dataset))]
        self.n = items[0].num_nodes
        self.pos = torch.stack([d[K.POS] for d in items])
        self.vel = torch.stack([d[K.VEL] for d in items])
        self.speed = torch.stack([d[K.X] for d in items])
        self.target = torch.stack([d[K.TARGET_POS] for d in items])
        self.edge_index = items[0][K.EDGE_INDEX]
        qq = torch.stack([d[K.EDGE_ATTR] for d in items])
        src, dst = self.edge_index
        sq_dist = (self.pos[:, src] - self.pos[:, dst]).pow(2).sum(-1, keepdim=True)
        # The original feeds the input frame's squared distances as a second edge feature.
        self.edge_attr = torch.cat([qq, sq_dist], dim=-1)
        self._edges = {}

    def __len__(self):
        return self.pos.size(0)

    def _batched_edges(self, b):
        if b not in self._edges:
            offsets = (torch.arange(b) * self.n).repeat_interleave(self.edge_index.size(1))
            self._edges[b] = (self.edge_index.repeat(1, b) + offsets, torch.arange(b).repeat_interleave(self.n))
        return self._edges[b]

    def batch(self, idx):
        b = idx.numel()
        edge_index, batch = self._batched_edges(b)
        return Data(**{K.POS: self.pos[idx].reshape(-1, 3), K.VEL: self.vel[idx].reshape(-1, 3),
                       K.X: self.speed[idx].reshape(-1, 1), K.EDGE_INDEX: edge_index,
                       K.EDGE_ATTR: self.edge_attr[idx].reshape(-1, self.edge_attr.size(-1)), K.BATCH: batch,
                       K.TARGET_POS: self.target[idx].reshape(-1, 3)}), b


def load_splits(args):
    kw = dict(files=args.files) if args.files else {}
    root = args.root
    train = NBody(root, "train", max_samples=args.max_samples, **kw)
    return Split(train), Split(NBody(root, "valid", **kw)), Split(NBody(root, "test", **kw))


# --------------------------------------------------------------------------- models
def build(name):
    if name == "egnn":
        model = EGNN(hidden_channels=64, num_layers=4, in_channels=1, edge_dim=2, use_velocity=True)
        return model, lambda data: model(data)[K.POS]
    if name == "gnn":
        model = GNN(hidden=64, num_layers=4, edge_dim=1)
    elif name == "rf":
        model = RadialFieldVel(hidden=64, num_layers=4, edge_dim=2)
    else:
        raise ValueError(f"model must be egnn, gnn or rf, got {name!r}")
    return model, model


@torch.no_grad()
def evaluate(predict, split, batch_size=100):
    total = 0.0
    for start in range(0, len(split), batch_size):
        data, b = split.batch(torch.arange(start, min(start + batch_size, len(split))))
        total += torch.nn.functional.mse_loss(predict(data), data[K.TARGET_POS]).item() * b
    return total / len(split)


def train(args):
    torch.manual_seed(args.seed)
    log_path = LOGS / f"nbody_{args.model}.json"
    t0 = time.time()
    train_set, valid, test = load_splits(args)
    model, predict = build(args.model)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    gen = torch.Generator().manual_seed(args.seed)
    record = {"model": args.model, "command": _command(), "seed": args.seed, "lr": args.lr, "weight_decay": args.weight_decay,
              "batch_size": args.batch_size, "train_samples": len(train_set), "max_epochs": args.epochs,
              "max_minutes": args.max_minutes, "threads": torch.get_num_threads(), "curve": [],
              "best_val": math.inf, "best_epoch": None, "test_at_best": None, "stopped": "max_epochs",
              "parameters": sum(p.numel() for p in model.parameters())}
    best_state, stale, epoch = None, 0, -1
    print(f"{args.model}: {record['parameters']} parameters, data ready in {time.time() - t0:.1f}s", flush=True)
    t_train = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(train_set), generator=gen)
        num_batches = len(train_set) // args.batch_size  # drop_last, as the original
        total = 0.0
        for k in range(num_batches):
            data, _ = train_set.batch(perm[k * args.batch_size:(k + 1) * args.batch_size])
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(predict(data), data[K.TARGET_POS])
            if not torch.isfinite(loss):
                record["stopped"] = f"non-finite loss {loss.item()} at epoch {epoch}, batch {k}"
                print(record["stopped"], flush=True)
                break
            loss.backward()
            opt.step()
            total += loss.item()
        if record["stopped"].startswith("non-finite"):
            break
        point = {"epoch": epoch, "train": total / num_batches, "time_s": round(time.time() - t_train, 1)}
        if epoch % args.test_interval == 0:
            model.eval()
            point["valid"] = evaluate(predict, valid)
            if point["valid"] < record["best_val"]:
                record["best_val"], record["best_epoch"] = point["valid"], epoch
                best_state = copy.deepcopy(model.state_dict())
                stale = 0
            else:
                stale += 1
            print(f"epoch {epoch} train {point['train']:.5f} valid {point['valid']:.5f} "
                  f"best {record['best_val']:.5f} @ {record['best_epoch']} ({point['time_s']:.0f}s)", flush=True)
        record["curve"].append(point)
        if epoch % 50 == 0:
            _dump(record, log_path)
        if args.patience and stale >= args.patience:
            record["stopped"] = f"early stopping: no validation improvement in {args.patience} evaluations"
            break
        if args.max_minutes and time.time() - t_train > 60 * args.max_minutes:
            record["stopped"] = f"wall-clock budget of {args.max_minutes} min"
            break
    record["epochs_run"] = epoch + 1
    record["train_wall_s"] = round(time.time() - t_train, 1)
    if best_state is not None:
        model.load_state_dict(best_state)
        model.eval()
        record["test_at_best"] = evaluate(predict, test)
    print(f"stopped: {record['stopped']} after {record['epochs_run']} epochs; best valid {record['best_val']:.5f} "
          f"at epoch {record['best_epoch']}, test {record['test_at_best']}", flush=True)
    _dump(record, log_path)
    report()


def linear(args):
    """Linear baseline ``x + t v`` with the least-squares ``t`` on the training set."""
    train_set, valid, test = load_splits(args)
    v, d = train_set.vel, train_set.target - train_set.pos
    t = float((v * d).sum() / (v * v).sum())

    def mse(s):
        return torch.nn.functional.mse_loss(s.pos + t * s.vel, s.target).item()

    record = {"model": "linear", "command": _command(), "t": t, "best_val": mse(valid), "test_at_best": mse(test), "epochs_run": 0,
              "stopped": "closed form", "train_samples": len(train_set)}
    print(record)
    _dump(record, LOGS / "nbody_linear.json")
    report()


def _command():
    return "python benchmarks/nbody.py " + " ".join(sys.argv[1:])


def _dump(record, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(path)


# --------------------------------------------------------------------------- speed
def speed(args):
    """Forward + backward (+ Adam step) time per batch of 100 systems for equigraph's EGNN,
    the original code's layer and a dense all-pairs EGNN, all with the same weights."""
    from benchmarks.reference.egnn_dense import DenseEGNNVel
    from benchmarks.reference.egnn_original import EGNN_vel

    torch.manual_seed(args.seed)
    train_set, _, _ = load_splits(args)
    data, b = train_set.batch(torch.arange(args.batch_size))
    n = train_set.n
    ours = EGNN(hidden_channels=64, num_layers=4, in_channels=1, edge_dim=2, use_velocity=True)
    original = EGNN_vel(in_node_nf=1, in_edge_nf=2, hidden_nf=64, n_layers=4, recurrent=True)
    dense = DenseEGNNVel(in_node_nf=1, in_edge_nf=2, hidden_nf=64, n_layers=4)
    state = {k.replace("convs.", "layers.").replace("vel_mlp", "coord_mlp_vel"): v
             for k, v in ours.state_dict().items()}
    original.load_state_dict(state)
    dense.load_state_dict(state)

    # Same inputs in each implementation's layout.
    rows, cols = data.edge_index[1], data.edge_index[0]  # original: row = centre
    dense_attr = torch.zeros(b, n, n, data.edge_attr.size(-1))
    dense_attr[data.edge_index[1] // n, data.edge_index[1] % n, data.edge_index[0] % n] = data.edge_attr
    target = data[K.TARGET_POS]
    impls = {
        "equigraph EGNN": (ours, lambda: ours(data)[K.POS]),
        "original E_GCL_vel": (original, lambda: original(data.x, data.pos, (rows, cols), data.vel, data.edge_attr)),
        "dense all-pairs": (dense, lambda: dense(data.x.view(b, n, 1), data.pos.view(b, n, 3), data.vel.view(b, n, 3),
                                                 dense_attr).reshape(-1, 3)),
    }
    with torch.no_grad():
        ref = impls["equigraph EGNN"][1]()
        for name, (_, fn) in impls.items():
            err = (fn() - ref).abs().max().item()
            if err > 1e-4:
                raise RuntimeError(f"{name} disagrees with equigraph's EGNN by {err} on the same weights")
    # The baselines' cost per batch, for the accuracy table (not the same function).
    for key in ("gnn", "rf"):
        model, predict = build(key)
        impls[f"{LABELS[key]} baseline (PyG)"] = (model, lambda predict=predict: predict(data))
    notes = {}
    if args.compile:
        compiled = torch.compile(ours)
        t = time.time()
        try:
            for _ in range(3):  # compile forward and backward graphs
                torch.nn.functional.mse_loss(compiled(data)[K.POS], target).backward()
            impls["equigraph EGNN + torch.compile"] = (ours, lambda: compiled(data)[K.POS])
            notes["compile_s"] = round(time.time() - t, 1)
        except Exception as err:  # report, do not hide, a compile failure
            notes["compile_error"] = f"{type(err).__name__}: {err}"[:500]

    opts = {name: torch.optim.Adam(m.parameters(), lr=0.0) for name, (m, _) in impls.items()}

    def step(name, fn, backward=True):
        if not backward:
            with torch.no_grad():
                fn()
            return
        opts[name].zero_grad()
        torch.nn.functional.mse_loss(fn(), target).backward()
        opts[name].step()

    times = {name: {"fwd": [], "train": []} for name in impls}
    for name, (_, fn) in impls.items():  # warm-up
        for _ in range(5):
            step(name, fn)
    # Interleaved repeats: each round times every implementation once, so load changes on
    # the shared machine hit all of them alike; the median over rounds is reported.
    for _ in range(args.repeats):
        for name, (_, fn) in impls.items():
            for kind, bw in (("fwd", False), ("train", True)):
                t = time.perf_counter()
                for _ in range(args.inner):
                    step(name, fn, bw)
                times[name][kind].append((time.perf_counter() - t) / args.inner * 1e3)
    result = {name: {k: statistics.median(v) for k, v in d.items()} for name, d in times.items()}
    profile = None
    ours_t, orig_t = result["equigraph EGNN"]["train"], result["original E_GCL_vel"]["train"]
    if ours_t > orig_t / 1.5 or args.profile:
        profile = _profile(lambda: step("equigraph EGNN", impls["equigraph EGNN"][1]))
    record = {"command": _command(), "batch_size": b, "threads": torch.get_num_threads(), "repeats": args.repeats, "inner": args.inner,
              "ms": result, "raw_ms": times, "profile": profile, **notes}
    for name, r in result.items():
        print(f"{name:35s} forward {r['fwd']:7.2f} ms   train step {r['train']:7.2f} ms")
    print(json.dumps(notes))
    _dump(record, LOGS / "nbody_speed.json")
    report()


def _profile(fn):
    from torch.profiler import ProfilerActivity, profile

    for _ in range(3):
        fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(10):
            fn()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)


# --------------------------------------------------------------------------- report
def report(args=None):
    logs = {p.stem.removeprefix("nbody_"): json.loads(p.read_text()) for p in sorted(LOGS.glob("nbody_*.json"))}
    rows, lines = [], []
    for key in ("linear", "gnn", "rf", "egnn"):
        rec = logs.get(key)
        if rec is None or rec.get("test_at_best") is None:
            continue
        best_epoch = rec.get("best_epoch")
        extra = {"published": PUBLISHED[key], "epochs": rec.get("epochs_run"),
                 "best_epoch": "" if best_epoch is None else best_epoch,
                 "valid": rec.get("best_val"), "wall_min": round(rec.get("train_wall_s", 0) / 60, 1),
                 "s_per_epoch": round(rec.get("train_wall_s", 0) / max(rec.get("epochs_run") or 1, 1), 2),
                 "seed": rec.get("seed", "")}
        rows.append(_results.row(LABELS[key], "test, best valid", "MSE", rec["test_at_best"], "sim. units^2", **extra))
        lines.append(f"- {LABELS[key]}: stopped by {rec.get('stopped')}; {rec.get('epochs_run')} epochs, "
                     f"{rec.get('train_samples')} training systems; `{rec.get('command', '')}`.")
    for key in ("tfn", "se3_transformer"):
        rows.append(_results.row(LABELS[key], "published only", "MSE", "not run", "sim. units^2",
                                 published=PUBLISHED[key]))
    spd = logs.get("speed")
    speed_lines = []
    if spd:
        ms = spd["ms"]
        base = ms["original E_GCL_vel"]["train"]
        for name, r in ms.items():
            # A speed-up is meaningful only between implementations of the same function.
            ratio = {} if "baseline" in name else {"speedup_vs_original": base / r["train"]}
            rows.append(_results.row(name, f"CPU, batch {spd['batch_size']}, {spd['threads']} thread(s)",
                                     "train step", r["train"], "ms", forward_ms=r["fwd"], **ratio))
        speed_lines = [
            "", "## Speed", "",
            f"Median of {spd['repeats']} interleaved rounds ({spd['inner']} steps each) of forward, and of "
            "forward + backward + Adam step, on one batch of 100 systems, identical weights (outputs checked "
            "equal before timing). `speedup_vs_original` = original train step / this train step.",
        ]
        ours = ms["equigraph EGNN"]["train"]
        verdict = "meets" if base / ours >= 1.5 else "does not meet"
        speed_lines.append(f"equigraph's EGNN train step is {base / ours:.2f}x the original code's speed, which "
                           f"{verdict} the 1.5x target. Command: `{spd.get('command', '')}`.")
        if "compile_s" in spd:
            speed_lines.append(f"torch.compile took {spd['compile_s']} s (not included).")
        if "compile_error" in spd:
            speed_lines.append(f"torch.compile failed: `{spd['compile_error']}`")
        if spd.get("profile"):
            speed_lines += ["", "Profile of equigraph's EGNN train step (CPU, self time):", "", "```",
                            spd["profile"], "```"]
    notes = "\n".join([
        "MSE of the positions at frame 40 predicted from frame 30 (1000 integration steps), test set of 2,000 "
        "trajectories, model with the best validation MSE (validation every 5 epochs); `published` is Table 2 "
        "of Satorras et al. (2021). Data: `equigraph.datasets.NBody` simulated with the original generator's "
        "random stream (seed 43), not the published files, so numbers carry the sampling noise of a "
        "different draw. Linear: `x + t v` with the least-squares `t` on the training set. TFN and "
        "SE(3)-Transformer were not run (published numbers only). EGNN, Radial Field: edge input "
        "`[q_i q_j, |x_i - x_j|^2]` of the input frame (the original's `in_edge_nf=2`); GNN: `q_i q_j`. All "
        "training and timing ran with one thread per process on a 2-core machine shared with other jobs "
        "(load 3 to 6), so wall times and per-epoch times are inflated by that contention.",
        "", *lines, "", "![learning curves](nbody.png)", *speed_lines])
    _results.write(NAME, rows, notes, extra={"logs": {k: {kk: vv for kk, vv in v.items() if kk != "curve"}
                                                      for k, v in logs.items()}})
    _plot(logs)


def _plot(logs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, key in enumerate(("egnn", "gnn", "rf")):
        rec = logs.get(key)
        if not rec or not rec.get("curve"):
            continue
        pts = [p for p in rec["curve"] if "valid" in p]
        color = f"C{i}"
        ax.plot([p["epoch"] for p in pts], [p["valid"] for p in pts], color=color, label=f"{LABELS[key]} valid")
        ax.plot([p["epoch"] for p in rec["curve"]], [p["train"] for p in rec["curve"]], color=color, alpha=0.3,
                lw=0.8, label=f"{LABELS[key]} train")
        ax.axhline(PUBLISHED[key], color=color, ls="--", lw=0.8)
    if "linear" in logs:
        ax.axhline(logs["linear"]["best_val"], color="k", ls=":", lw=0.8, label="Linear valid")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE (dashed: published test MSE)")
    ax.set_title("N-body (charged, 5 particles): learning curves")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(_results.RESULTS / f"{NAME}.png", dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("train", "linear", "speed", "report"):
        p = sub.add_parser(name)
        p.add_argument("--root", default=None, help="NBody cache folder (default: $EQUIGRAPH_CACHE/nbody)")
        p.add_argument("--files", default=None, help="folder with the published .npy files")
        p.add_argument("--max-samples", type=int, default=3000)
        p.add_argument("--seed", type=int, default=1)
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--batch-size", type=int, default=100)
    t = sub.choices["train"]
    t.add_argument("--model", choices=("egnn", "gnn", "rf"), required=True)
    t.add_argument("--epochs", type=int, default=10_000)
    t.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget of the training loop")
    t.add_argument("--patience", type=int, default=None, help="early stopping, in validation rounds")
    t.add_argument("--test-interval", type=int, default=5)
    t.add_argument("--lr", type=float, default=5e-4)
    t.add_argument("--weight-decay", type=float, default=1e-12)
    s = sub.choices["speed"]
    s.add_argument("--repeats", type=int, default=15)
    s.add_argument("--inner", type=int, default=10)
    s.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    s.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    {"train": train, "linear": linear, "speed": speed, "report": report}[args.cmd](args)


if __name__ == "__main__":
    main()
