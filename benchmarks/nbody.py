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
    t = _linear_t(train_set)

    def mse(s):
        return torch.nn.functional.mse_loss(s.pos + t * s.vel, s.target).item()

    record = {"model": "linear", "command": _command(), "t": t, "best_val": mse(valid), "test_at_best": mse(test), "epochs_run": 0,
              "stopped": "closed form", "train_samples": len(train_set)}
    print(record)
    _dump(record, LOGS / "nbody_linear.json")
    report()


def _linear_t(split):
    v, d = split.vel, split.target - split.pos
    return float((v * d).sum() / (v * v).sum())


def _command():
    return "python benchmarks/nbody.py " + " ".join(sys.argv[1:])


def _dump(record, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(path)


# --------------------------------------------------------------------------- speed
def speed(args):
    """Forward time (no grad) per batch of 100 systems for each model of the accuracy table.
    EGNN against the original code, a dense all-pairs EGNN and ``torch.compile`` is timed by
    ``benchmarks/egnn_speed.py``; :func:`report` takes those speed-ups from its results."""
    torch.manual_seed(args.seed)
    train_set, _, _ = load_splits(args)
    data, b = train_set.batch(torch.arange(args.batch_size))
    t = _linear_t(train_set)
    # Weights are fresh: the forward cost does not depend on their values.
    predictors = {"linear": lambda: data[K.POS] + t * data[K.VEL]}
    for key in ("gnn", "rf", "egnn"):
        model, predict = build(key)
        model.eval()
        predictors[key] = lambda predict=predict: predict(data)
    times = {key: [] for key in predictors}
    with torch.no_grad():
        for fn in predictors.values():  # warm-up
            for _ in range(3):
                fn()
        # Interleaved rounds: load changes on the shared machine hit every model alike.
        for _ in range(args.repeats):
            for key, fn in predictors.items():
                start = time.perf_counter()
                for _ in range(args.inner):
                    fn()
                times[key].append((time.perf_counter() - start) / args.inner * 1e3)
    result = {key: statistics.median(v) for key, v in times.items()}
    for key, ms in result.items():
        print(f"{LABELS[key]:15s} forward {ms:8.3f} ms per batch of {b}")
    record = {"command": _command(), "batch_size": b, "threads": torch.get_num_threads(), "repeats": args.repeats,
              "inner": args.inner, "forward_ms": result, "raw_ms": times}
    _dump(record, LOGS / "nbody_speed.json")
    report()


def _egnn_speed_rows():
    """The N-body-shaped rows of ``results/egnn_speed.json``: its speed-ups of equigraph's EGNN
    (eager and compiled) over the original code, plus the same ratio over the dense all-pairs
    EGNN, derived from its timings. ``[]`` when that benchmark has not been run."""
    path = _results.RESULTS / "egnn_speed.json"
    if not path.exists():
        return []
    rows = [r for r in json.loads(path.read_text())["rows"] if r["setting"].startswith("nbody:")]
    ms = {(r["model"], r["setting"], r["metric"]): r["value"] for r in rows if r["unit"] == "ms"}
    out = [r for r in rows if r["model"].startswith("speed-up:")]
    for (model, setting, metric), value in ms.items():
        dense = ms.get(("dense all-pairs", setting, metric))
        if model.startswith("equigraph") and metric in ("forward", "train step, Adam") and dense:
            label = "train step, both plain Adam" if metric == "train step, Adam" else metric
            out.append(_results.row(f"speed-up: {model} vs dense all-pairs", setting, label,
                                    round(dense / value, 3), "x"))
    return out


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
    speed_lines = ["", "## Speed"]
    if spd:
        setting = f"CPU, batch {spd['batch_size']}, {spd['threads']} thread(s), no grad"
        for key in ("linear", "gnn", "rf", "egnn"):
            rows.append(_results.row(LABELS[key], setting, "forward", round(spd["forward_ms"][key], 3), "ms"))
        speed_lines += [
            "", f"Forward time per batch of {spd['batch_size']} systems (the batch of the test evaluation): median of "
            f"{spd['repeats']} interleaved rounds of {spd['inner']} no-grad forward passes each, on the first "
            f"training batch, {spd['threads']} thread(s), models of the table with fresh weights (the cost does "
            f"not depend on their values). Command: `{spd.get('command', '')}`.",
        ]
    fast = _egnn_speed_rows()
    rows += fast
    if fast:
        plain = {(r["model"], r["setting"]): r["value"] for r in fast
                 if r["metric"] == "train step, both plain Adam" and r["model"].endswith("vs original")}
        summary = "; ".join(f"{m.removeprefix('speed-up: ').removesuffix(' vs original')} {v:.2f}x "
                            f"({setting.rsplit(', ', 1)[-1]})" for (m, setting), v in plain.items())
        speed_lines += [
            "", "EGNN against the original code (`E_GCL_vel`), a dense all-pairs EGNN and `torch.compile`: the "
            "`speed-up:` rows, taken from `benchmarks/results/egnn_speed.json` (rows `nbody: ...`: 100 random "
            "5-particle systems, fully connected, hidden 64, 4 layers, the shapes of this benchmark; same "
            "weights and inputs in every implementation). A speed-up is the other implementation's median time "
            "divided by equigraph's (above 1: equigraph faster); the dense ratios are derived from that file's "
            "timings. Train step, both plain Adam, vs the original: " + summary + ". Timings, the QM9-sized batch "
            "and the compile times: [egnn_speed.md](egnn_speed.md).",
        ]
    else:
        speed_lines += ["", "EGNN vs the original code: run `python benchmarks/egnn_speed.py` (no "
                        "`results/egnn_speed.json` yet)."]
    notes = "\n".join([
        "MSE of the positions at frame 40 predicted from frame 30 (1000 integration steps), test set of 2,000 "
        "trajectories, model with the best validation MSE (validation every 5 epochs); `published` is Table 2 "
        "of Satorras et al. (2021). Data: `equigraph.datasets.NBody` simulated with the original generator's "
        "random stream (seed 43), not the published files, so numbers carry the sampling noise of a "
        "different draw. Linear: `x + t v` with the least-squares `t` on the training set. TFN and "
        "SE(3)-Transformer were not run (published numbers only). EGNN, Radial Field: edge input "
        "`[q_i q_j, |x_i - x_j|^2]` of the input frame (the original's `in_edge_nf=2`); GNN: `q_i q_j`. All "
        "training ran with one thread per process on a 2-core machine shared with other jobs "
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
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    {"train": train, "linear": linear, "speed": speed, "report": report}[args.cmd](args)


if __name__ == "__main__":
    main()
