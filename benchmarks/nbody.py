"""The charged 5-body benchmark of the EGNN paper (Satorras et al. 2021, Table 2):
MSE of the positions 1000 steps ahead, on the test set, for the model with the best
validation MSE.

The protocol (``main_nbody.py`` of https://github.com/vgsatorras/egnn) is
``configs/nbody_egnn.yaml``: 3,000 training trajectories, 2,000 validation, 2,000 test
(the ``nbody`` dataset of :mod:`equigraph.datasets.registry`, frames 30 -> 40); batch 100,
Adam, lr 5e-4, weight decay 1e-12, up to 10,000 epochs, validation every 5 epochs, MSE
loss; EGNN with 4 layers of 64 channels, node input the speed, edge input ``[q_i q_j,
|x_i - x_j|^2]`` (the original's ``in_edge_nf=2``), fully connected graph.

Every model trains through :func:`equigraph.train.fit` on that configuration: EGNN from
its ``model`` section, the GNN and Radial Field baselines
(``benchmarks/reference/nbody_baselines.py``) passed as modules. The test MSE is the
trainer's ``test_pos_mse`` (target ``pos`` with ``metric: mse``) of the best-validation
checkpoint, checked against a direct evaluation of the saved best model.

Subcommands (each one writes ``benchmarks/logs/nbody_<name>.json`` and then re-renders
``benchmarks/results/nbody.{json,md,png}`` from those logs)::

    python benchmarks/nbody.py train --model egnn --epochs 2500     # the long run
    python benchmarks/nbody.py train --model gnn --epochs 340
    python benchmarks/nbody.py train --model rf --epochs 900
    python benchmarks/nbody.py linear
    python benchmarks/nbody.py speed
    python benchmarks/nbody.py report

``train --tag NAME`` writes ``nbody_<model>_<NAME>.json`` and leaves the results alone
(short checks); ``--override KEY=VALUE`` passes any other configuration change.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import _results  # noqa: E402
from benchmarks.reference.nbody_baselines import GNN, RadialFieldVel  # noqa: E402
from equigraph.data import keys as K  # noqa: E402
from equigraph.models.contract import Output  # noqa: E402
import equigraph.models.segnn  # noqa: E402,F401  (registers "segnn")
import equigraph.models.tfn  # noqa: E402,F401  (registers "tfn")

LOGS = Path(__file__).resolve().parent / "logs"
CONFIG = ROOT / "configs" / "nbody_egnn.yaml"
#: Run folders (checkpoints, metrics.csv); git-ignored. The benchmark keeps its record in LOGS.
RUNS = ROOT / "runs" / "bench_nbody"
NAME = "nbody"
#: Test MSE of the EGNN paper, Table 2.
PUBLISHED = {"linear": 0.0819, "se3_transformer": 0.0244, "tfn": 0.0155, "gnn": 0.0107, "rf": 0.0104,
             "egnn": 0.0071, "fa_gnn": 0.0057,  # FA-GNN: Puny et al. (2022), Table 3
             "segnn": 0.0043}  # SEGNN: Brandstetter et al. (2022), Table 1
LABELS = {"linear": "Linear", "se3_transformer": "SE(3)-Transformer", "tfn": "TFN", "gnn": "GNN",
          "rf": "Radial Field", "egnn": "EGNN", "fa_gnn": "FA-GNN", "segnn": "SEGNN"}
MODELS = ("egnn", "gnn", "rf", "fa_gnn", "segnn", "tfn")
#: Models built from their own configuration's ``model`` section (registry models).
CONFIGURED = ("egnn", "fa_gnn", "segnn", "tfn")
#: The logs the results table is rendered from (``train --tag`` logs are not among them).
REPORTED = ("linear", "gnn", "rf", "egnn", "fa_gnn", "segnn", "tfn", "speed")


# --------------------------------------------------------------------------- models
class Positions(nn.Module):
    """A baseline of ``nbody_baselines`` (``forward(data)`` -> positions ``[N, 3]``) under
    the model contract of the trainer: a dict with ``"pos"``, declared a node-level point."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    @property
    def outputs(self) -> dict:
        return {K.POS: Output("point", "node")}

    def forward(self, data) -> dict:
        return {K.POS: self.net(data)}


def build(name: str, config: dict) -> nn.Module:
    """The model ``name`` with its ``forward(data)["pos"]``: EGNN from ``config["model"]``,
    the baselines with the original sizes (GNN reads only ``q_i q_j`` of ``edge_attr``)."""
    if name in CONFIGURED:
        from equigraph.models import build_model

        return build_model(config["model"])
    if name == "gnn":
        return Positions(GNN(hidden=64, num_layers=4, edge_dim=1))
    if name == "rf":
        return Positions(RadialFieldVel(hidden=64, num_layers=4, edge_dim=2))
    raise ValueError(f"model must be one of {', '.join(MODELS)}, got {name!r}")


def load(overrides=(), path: Path = CONFIG) -> dict:
    from equigraph.train import load_config

    return load_config(path, list(overrides))


def config_file(name: str) -> Path:
    """The protocol file of model ``name``: FA-GNN (the FA paper's width and lr, no input
    squared distance), SEGNN and TFN have their own; every other model trains on
    ``configs/nbody_egnn.yaml``."""
    return ROOT / "configs" / f"nbody_{name}.yaml" if name in ("fa_gnn", "segnn", "tfn") else CONFIG


def splits_of(config: dict):
    from equigraph.datasets.registry import build_splits
    from equigraph.train.run import dataset_options

    return build_splits(dataset_options(config["data"]))


# --------------------------------------------------------------------------- train
def overrides_of(args) -> list[str]:
    """Configuration overrides from the command line: only what was given, so the
    configuration file stays the protocol."""
    out = [f"out_dir={RUNS / getattr(args, 'model', 'egnn')}", "train.accelerator=cpu",
           f"train.num_threads={args.threads}"]
    for flag, key in (("seed", "seed"), ("epochs", "train.max_epochs"), ("batch_size", "data.batch_size"),
                      ("max_samples", "data.max_train"), ("lr", "train.lr"), ("weight_decay", "train.weight_decay"),
                      ("test_interval", "train.check_val_every_n_epoch"),
                      ("patience", "train.early_stopping_patience"), ("root", "data.root")):
        value = getattr(args, flag, None)
        if value is not None:
            out.append(f"{key}={value}")
    return out + list(args.override or [])


def position_mse(predict, graphs, batch_size: int = 100) -> float:
    """MSE of ``predict(batch)`` against ``target_pos`` over ``graphs``, in float64."""
    from torch_geometric.loader import DataLoader

    total, count = 0.0, 0
    with torch.no_grad():
        for batch in DataLoader(graphs, batch_size=batch_size):
            err = (predict(batch).double() - batch[K.TARGET_POS].double()).square()
            total += float(err.sum())
            count += err.numel()
    return total / count


def run(name: str, overrides=(), *, splits=None, log_path: Path | None = None, command: str | None = None) -> dict:
    """Train model ``name`` with :func:`equigraph.train.fit` on the configuration plus
    ``overrides``; return (and write to ``log_path``) the benchmark record in MSE."""
    from equigraph.models import io as model_io
    from equigraph.train import fit, read_metrics

    config = load(overrides, config_file(name))
    targets = config["targets"]
    if list(targets) != ["pos"] or targets["pos"].get("metric") != "mse" \
            or targets["pos"].get("loss", config["train"]["loss"]) != "mse":
        raise ValueError(f"targets: the N-body benchmark needs the one target pos with loss mse and metric mse; "
                         f"got {targets}")
    weight = float(targets["pos"].get("weight", 1.0))
    torch.manual_seed(int(config["seed"]))
    net = None if name in CONFIGURED else build(name, config)
    start = time.perf_counter()
    # Without splits= the trainer builds the data itself and model.pt records how.
    result = fit(config, splits=splits, model=net)
    wall = time.perf_counter() - start
    if splits is None:
        splits = splits_of(config)
    run_dir = Path(result.out_dir)
    scale = result.metrics["pos"]["loss_scale"]
    factor = scale**2 / weight  # the training loss is weight * MSE / scale^2
    series = read_metrics(result.metrics_csv)
    train = dict(series.get("train_loss", []))
    valid = dict(series.get("val_pos_mse", []))
    curve = []
    for epoch in sorted(train):
        point = {"epoch": epoch, "train": train[epoch] * factor}
        if epoch in valid:
            point["valid"] = valid[epoch]
        curve.append(point)
    best_epoch = min(valid, key=valid.get) if valid else None
    # The trainer's number, checked against the saved best model scored here.
    model = model_io.load(result.model_file) if result.model_file else net
    model.eval()
    direct = position_mse(lambda b: model(b)[K.POS], splits.test, config["data"]["eval_batch_size"] or 100)
    test_mse = result.metrics["pos"]["test_mse"]
    if abs(direct - test_mse) > 1e-4 * direct:
        raise ValueError(f"test MSE: the trainer reports {test_mse:.6g} but the saved best model scores "
                         f"{direct:.6g}")
    max_epochs = config["train"]["max_epochs"]
    patience = config["train"]["early_stopping_patience"]
    record = {
        "model": name, "command": command or _command(), "config": str(config_file(name).relative_to(ROOT)),
        "overrides": list(overrides), "seed": config["seed"], "lr": config["train"]["lr"],
        "weight_decay": config["train"]["weight_decay"], "batch_size": config["data"]["batch_size"],
        "train_samples": result.num_train, "max_epochs": max_epochs, "threads": torch.get_num_threads(),
        "loss_scale": scale, "curve": curve,
        "best_val": valid[best_epoch] if valid else None, "best_epoch": best_epoch,
        "test_at_best": test_mse, "test_direct": direct,
        "stopped": "max_epochs" if result.epochs >= max_epochs
        else f"train.max_time {config['train']['max_time']}" if config["train"]["max_time"] and patience is None
        else "max_epochs" if patience is None
        else f"early stopping: no validation improvement in {patience} evaluations",
        "epochs_run": result.epochs, "train_wall_s": round(wall, 1), "s_per_epoch": result.seconds_per_epoch,
        "parameters": result.num_parameters, "run_dir": str(run_dir),
    }
    print(f"{name}: {record['epochs_run']} epochs, best valid MSE {record['best_val']:.5f} at epoch {best_epoch}, "
          f"test MSE {test_mse:.5f} (direct {direct:.5f}), {result.seconds_per_epoch:.2f} s/epoch (median)", flush=True)
    if log_path is not None:
        _dump(record, log_path)
        shutil.copy(result.metrics_csv, log_path.with_name(f"{log_path.stem}_metrics.csv"))
    return record


def train(args):
    tag = f"_{args.tag}" if args.tag else ""
    run(args.model, overrides_of(args), log_path=LOGS / f"nbody_{args.model}{tag}.json")
    if not args.tag:
        report()


def linear(args):
    """Linear baseline ``x + t v`` with the least-squares ``t`` on the training set."""
    splits = splits_of(load(overrides_of(args)))
    t = _linear_t(splits)

    def mse(split):
        pos, vel, target = (splits.values(k, split).double() for k in (K.POS, K.VEL, K.TARGET_POS))
        return float((pos + t * vel - target).square().mean())

    record = {"model": "linear", "command": _command(), "t": t, "best_val": mse("val"), "test_at_best": mse("test"),
              "epochs_run": 0, "stopped": "closed form", "train_samples": len(splits.train)}
    print(record)
    _dump(record, LOGS / "nbody_linear.json")
    report()


def _linear_t(splits) -> float:
    pos, vel, target = (splits.values(k, "train").double() for k in (K.POS, K.VEL, K.TARGET_POS))
    return float((vel * (target - pos)).sum() / (vel * vel).sum())


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
    from torch_geometric.data import Batch

    config = load(overrides_of(args))
    torch.manual_seed(int(config["seed"]))
    splits = splits_of(config)
    b = config["data"]["batch_size"]
    data = Batch.from_data_list([splits.train[i] for i in range(b)])
    t = _linear_t(splits)
    # Weights are fresh: the forward cost does not depend on their values.
    predictors = {"linear": lambda: data[K.POS] + t * data[K.VEL]}
    for key in ("gnn", "rf", "egnn"):
        model = build(key, config).eval()
        predictors[key] = lambda model=model: model(data)[K.POS]
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
SEGNN_NOTE = (
    "SEGNN: `configs/nbody_segnn.yaml`, the original's N-body setting (hidden 32x0e+32x1o, attributes up to "
    "l = 1, 4 layers, no normalisation, speed / centred position / velocity inputs, the velocity's harmonics in "
    "the node attributes, |x_ij| and q_i q_j as message features, a 1o displacement added to the input "
    "position; lr 5e-4, weight decay 1e-12, batch 100), with positions centred on each system's centroid "
    "instead of the original's per-particle coordinate mean (SEGNN issue #12, which breaks equivariance). "
    "The published 0.0043 is the paper's (its README command trains 1,000 epochs); a user of the original "
    "code reported 0.0856 with that command (RobDHess/Steerable-E3-GNN issue #2). The row here ran the "
    "full 1,000 epochs on one CPU thread, compiled (`train.compile: {dynamic: false}`, the same function as "
    "eager, about 3x faster) with the device loader (the same batches as PyG's DataLoader); the best "
    "validation MSE came early and later epochs did not improve on it (see the run line below and "
    "`benchmarks/logs/nbody_segnn_metrics.csv`).")
TFN_NOTE = (
    "TFN: `configs/nbody_tfn.yaml`, equigraph's TFN (4 convolutions, gated nonlinearities, hidden "
    "32x0e+16x1o+8x2e, harmonics up to l = 2, radial MLP on 16 Bessel functions over [0, 20], no envelope on "
    "the complete graph; speed and charge as scalars, the velocity as 1o; a 1o displacement added to the "
    "position), not the SE(3)-Transformer code's TFN behind the published 0.0155; CPU-budget run stopped by "
    "`train.max_time`.")


def report(args=None):
    logs = {key: json.loads((LOGS / f"nbody_{key}.json").read_text()) for key in REPORTED
            if (LOGS / f"nbody_{key}.json").is_file()}
    rows, lines = [], []
    for key in ("linear", "gnn", "rf", "egnn", "fa_gnn", "segnn", "tfn"):
        rec = logs.get(key)
        if rec is None or rec.get("test_at_best") is None:
            continue
        best_epoch = rec.get("best_epoch")
        extra = {"published": PUBLISHED[key], "epochs": rec.get("epochs_run"),
                 "best_epoch": "" if best_epoch is None else best_epoch,
                 "valid": rec.get("best_val"), "wall_min": round(rec.get("train_wall_s", 0) / 60, 1),
                 "s_per_epoch": round(rec.get("s_per_epoch")
                                      or rec.get("train_wall_s", 0) / max(rec.get("epochs_run") or 1, 1), 2),
                 "seed": rec.get("seed", "")}
        rows.append(_results.row(LABELS[key], "test, best valid", "MSE", rec["test_at_best"], "sim. units^2", **extra))
        if key == "linear":
            how = "least squares"
        elif rec.get("config"):
            how = f"trained by `equigraph.train.fit` on `{rec['config']}`"
        else:
            how = "trained by this script's own loop, before it used the trainer (same protocol)"
        lines.append(f"- {LABELS[key]}: {how}; stopped by {rec.get('stopped')}; {rec.get('epochs_run')} epochs, "
                     f"{rec.get('train_samples')} training systems; `{rec.get('command', '')}`.")
    for key in [k for k in ("tfn", "se3_transformer") if k not in logs]:
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
        "of Satorras et al. (2021), for FA-GNN Table 3 of Puny et al. (2022). Data: `equigraph.datasets.NBody` simulated with the original generator's "
        "random stream (seed 43), not the published files, so numbers carry the sampling noise of a "
        "different draw. The system is chaotic: a relative change of 1e-15 in the initial positions moves the "
        "frame-40 positions of about 3% of trajectories by more than 1e-3, so a cache simulated on another "
        "CPU (other floating-point rounding) is a slightly different data set; compare rows from one cache. "
        "Linear: `x + t v` with the least-squares `t` on the training set. "
        + ("SE(3)-Transformer was" if "tfn" in logs else "TFN and SE(3)-Transformer were")
        + " not run (published numbers only). The protocol is `configs/nbody_egnn.yaml` "
        "(FA-GNN: `configs/nbody_fa_gnn.yaml`, the FA code's width 60 and lr 1e-3, one random frame element per "
        "training step, the full 8-element average in validation and test); "
        "the trainer logs the position MSE (`metric: mse`), checked against the saved best model. `best_epoch` is the 0-based index of the "
        "epoch after which the validation ran. EGNN, Radial Field: edge input "
        "`[q_i q_j, |x_i - x_j|^2]` of the input frame (the original's `in_edge_nf=2`); GNN: `q_i q_j`. All "
        "training ran with one thread per process on a 2-core machine shared with other jobs "
        "(load 3 to 6), so wall times and per-epoch times are inflated by that contention.",
        *([""] + [SEGNN_NOTE] if "segnn" in logs else []),
        *([""] + [TFN_NOTE] if "tfn" in logs else []),
        "", *lines, "", "![learning curves](nbody.png)", *speed_lines])
    _results.write(NAME, rows, notes, extra={"logs": {k: {kk: vv for kk, vv in v.items() if kk != "curve"}
                                                      for k, v in logs.items()}})
    _plot(logs)


def _plot(logs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, key in enumerate(("egnn", "gnn", "rf", "fa_gnn", "segnn", "tfn")):
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


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("train", "linear", "speed", "report"):
        p = sub.add_parser(name)
        # Protocol flags default to the configuration file (None: not overridden).
        p.add_argument("--root", default=None, help="NBody cache folder (default: $EQUIGRAPH_CACHE/nbody)")
        p.add_argument("--max-samples", type=int, default=None, help="training trajectories (config: 3000)")
        p.add_argument("--seed", type=int, default=None)
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--batch-size", type=int, default=None)
        p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                       help="any other configuration change, e.g. train.ema_decay=0.999 (repeatable)")
    t = sub.choices["train"]
    t.add_argument("--model", choices=MODELS, required=True)
    t.add_argument("--epochs", type=int, default=None, help="epoch budget (config: 10000)")
    t.add_argument("--patience", type=int, default=None, help="early stopping, in validation rounds")
    t.add_argument("--test-interval", type=int, default=None, help="epochs between validations (config: 5)")
    t.add_argument("--lr", type=float, default=None)
    t.add_argument("--weight-decay", type=float, default=None)
    t.add_argument("--tag", default=None, help="write nbody_<model>_<TAG>.json and leave the results alone")
    s = sub.choices["speed"]
    s.add_argument("--repeats", type=int, default=15)
    s.add_argument("--inner", type=int, default=10)
    return parser


def main(argv=None):
    args = parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    {"train": train, "linear": linear, "speed": speed, "report": report}[args.cmd](args)


if __name__ == "__main__":
    main()
