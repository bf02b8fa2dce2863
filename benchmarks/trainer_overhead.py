"""Host time per training step that ``equigraph train`` adds to a plain PyTorch loop (issue 12).

At the issue's goal (30,000 QM9 molecules/s, batch 96) a whole step has 3.2 ms; on a GPU the
host must prepare each step faster than the device runs it. This measures what the trainer
(Lightning, logging, callbacks, the device loader) costs per step where the model costs
almost nothing: ``configs/qm9_egnn.yaml`` with a tiny EGNN (hidden 8, 1 layer, bonds only: a
1.6 Å graph) on real QM9 batches, through ``equigraph.train.fit`` and through a plain loop over the same device
loader, model, loss and fused AdamW. Both times are medians of whole epochs (with one
validation batch each), divided by the number of training steps.

    python benchmarks/trainer_overhead.py --threads 1
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import _results  # noqa: E402

NAME = "trainer_overhead"
CONFIG = ROOT / "configs" / "qm9_egnn.yaml"


def overrides(molecules: int, epochs: int, out_dir: str) -> list[str]:
    return [f"out_dir={out_dir}", f"train.max_epochs={epochs}", "train.progress_bar=false", "train.accelerator=cpu",
            f"data.max_train={molecules}", "data.max_val=96", "data.max_test=96", "data.num_workers=0",
            "data.loader=device", "model.hidden_channels=8", "model.num_layers=1", "model.interaction_graph=1.6"]


def plain_loop(config: dict, epochs: int) -> tuple[float, int]:
    """Median seconds per epoch and steps per epoch of a plain loop: the trainer's device
    loader, model, loss (L1 on the standardised target) and fused optimiser, no Lightning."""
    from equigraph.datasets.registry import build_splits
    from equigraph.models import inputs
    from equigraph.models.registry import build_model
    from equigraph.train.device_loader import DeviceBatches
    from equigraph.train.module import OPTIMIZERS
    from equigraph.train.run import _graph_builder, dataset_options
    from equigraph.train.targets import fit_statistics, pair, resolve_targets

    torch.manual_seed(config["seed"])
    splits = build_splits(dataset_options(config["data"]))
    model = build_model(config["model"])
    targets = resolve_targets(config, splits, model)
    fit_statistics(targets, splits, model)
    graph = _graph_builder(model)
    train = DeviceBatches(splits.train, config["data"]["batch_size"], shuffle=True, graph=graph)
    val = DeviceBatches(splits.val, config["data"]["batch_size"], graph=graph)
    hp = config["train"]
    # The trainer's optimiser (fused, as TaskModule.configure_optimizers builds it); its
    # per-epoch learning-rate schedule is left out.
    opt = OPTIMIZERS[hp["optimizer"]](model.parameters(), lr=float(hp["lr"]), weight_decay=float(hp["weight_decay"]),
                                      fused=True)
    t = targets[0]

    def epoch():
        model.train()
        for batch in train:
            with inputs.trusted():
                out = model(batch)
            pred, true = pair(t, out, batch)
            loss = torch.nn.functional.l1_loss(pred / t.scale, true / t.scale)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad(), inputs.trusted():
            for batch in val:
                pair(t, model(batch), batch)

    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        epoch()
        times.append(time.perf_counter() - start)
    return statistics.median(times), len(train)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--molecules", type=int, nargs="+", default=[1920, 9600],
                        help="training molecules of each run (batch 96); two or more sizes also give the "
                             "overhead per step and per epoch by a straight-line fit")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--name", default=NAME)
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    from equigraph.train.config import load_config
    from equigraph.train.run import fit

    where = f"CPU, {torch.get_num_threads()} thread(s)"
    rows, runs, commands = [], [], []
    for molecules in args.molecules:
        used = overrides(molecules, args.epochs, tempfile.mkdtemp(prefix="trainer_overhead_"))
        plain_s, steps = plain_loop(load_config(str(CONFIG), used), args.epochs)
        fit_s = fit(str(CONFIG), used).seconds_per_epoch
        runs.append((steps, fit_s - plain_s))
        commands.append(used[1:])
        setting = (f"QM9, {steps} steps/epoch of batch 96, tiny EGNN (hidden 8, 1 layer, 1.6 Å graph), "
                   f"device loader, {where}")
        for name, value in (("equigraph train (fit)", fit_s), ("plain PyTorch loop", plain_s)):
            rows.append(_results.row(name, setting, "time per training step", round(value / steps * 1e3, 3), "ms"))
        rows.append(_results.row("trainer overhead (fit - plain loop)", setting, "time per epoch",
                                 round(fit_s - plain_s, 4), "s"))
    if len(runs) > 1:
        # overhead(steps) = per_epoch + per_step * steps, least squares over the runs
        x = torch.tensor([float(s) for s, _ in runs], dtype=torch.float64)
        y = torch.tensor([d for _, d in runs], dtype=torch.float64)
        design = torch.stack([torch.ones_like(x), x], dim=1)
        per_epoch, per_step = torch.linalg.lstsq(design, y.unsqueeze(1)).solution.flatten().tolist()
        setting = f"QM9, batch 96, {'/'.join(str(s) for s, _ in runs)} steps/epoch, straight-line fit, {where}"
        rows.append(_results.row("trainer overhead (fit - plain loop)", setting, "per training step",
                                 round(per_step * 1e3, 3), "ms"))
        rows.append(_results.row("trainer overhead (fit - plain loop)", setting, "per epoch",
                                 round(per_epoch, 4), "s"))
    for r in rows:
        print(f"{r['model']:40s} {r['setting'][:60]:60s} {r['metric']:24s} {r['value']:9.4f} {r['unit']}", flush=True)
    notes = (f"Medians of {args.epochs} epochs (each with one validation batch of 96). The fits: "
             + "; ".join(f"`equigraph.train.run.fit(configs/qm9_egnn.yaml, {c})`" for c in commands)
             + ". The plain loop: the same device loader, model, statistics, loss and fused AdamW, without "
             "Lightning, logging or callbacks. The model is tiny on purpose: what remains is host time, "
             "which on a GPU must stay below the device's time per step (3.2 ms per batch of 96 at 30,000 "
             "molecules/s). The fit over the run sizes splits the overhead into a part per step and a part per "
             "epoch (validation bookkeeping, checkpoints, the learning-curve plot).")
    path = _results.write(args.name, rows, notes)
    print(path)
    return path


if __name__ == "__main__":
    main()
