"""Energy + forces EGNN on periodic EMT data (ASE's effective-medium theory on rattled,
strained Cu/Pt bulk crystals and slabs, :class:`equigraph.datasets.EMT`), trained through
the command line, beside two references that need no training.

The script runs ``python -m equigraph train CONFIG out_dir=OUT ...`` and
``python -m equigraph evaluate RUN`` as subprocesses (the user's path, not the Python
API), then loads the run's ``model.pt`` to predict the test split once more for the
parity plot and for full-precision MAEs, which must agree with ``evaluate``'s. Rows:

- ``EGNN``: test energy MAE (meV/atom) and force MAE (meV/Å, over every Cartesian
  component), wall time of the training command, epochs, s/epoch, parameters, structures;
- ``per-element reference + zero forces``: total energy
  :math:`\\hat E = \\sum_Z n_Z E^0_Z` with :math:`E^0_Z` fitted by least squares on the
  train split (what the trainer puts in the EGNN's readout before training), forces zero;
- ``mean predictor``: the train split's mean energy per atom, forces zero.

Every run goes into a new ``OUT/version_N`` (nothing is overwritten). The full run writes
``benchmarks/results/emt_forces.{json,md,png}`` and copies the run's ``result.json`` and
``metrics.csv`` to ``benchmarks/logs/emt_forces_*``; ``--quick`` (a plumbing check: 40
structures, 1 epoch, a tiny model) writes its results into its own run folder only.

    python benchmarks/emt_forces.py                      # the benchmark (12-20 min, 1 thread)
    python benchmarks/emt_forces.py --quick              # seconds
    python benchmarks/emt_forces.py --set train.max_epochs=5 --results-dir /tmp/emt
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _results import RESULTS, machine, render, row, write  # noqa: E402

NAME = "emt_forces"
LOGS = HERE / "logs"
EGNN = "EGNN"
REFERENCE = "per-element reference + zero forces"
MEAN = "mean predictor"
# A plumbing check: a few structures, one epoch, a model too small to learn anything.
QUICK = ["data.num_structures=40", "data.batch_size=8", "train.max_epochs=1", "train.ema_decay=null",
         "model.model.hidden_channels=8", "model.model.num_layers=1"]


def run_cli(args: list[str], env: dict) -> tuple[str, float]:
    """Run ``python -m equigraph ARGS`` from the repository root, echo its output as it
    comes, and return (output, wall seconds); a failure stops the benchmark."""
    cmd = [sys.executable, "-m", "equigraph", *args]
    print("$ " + " ".join(cmd), flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    rc = proc.wait()
    wall = time.perf_counter() - start
    if rc != 0:
        raise SystemExit(f"equigraph {args[0]} failed with status {rc}")
    return "".join(lines), wall


def run_folder(output: str) -> Path:
    match = re.search(r"^run folder: (.+)$", output, flags=re.M)
    if match is None:
        raise SystemExit("equigraph train printed no 'run folder:' line")
    path = Path(match.group(1).strip())
    return path if path.is_absolute() else ROOT / path


def parse_evaluate(output: str) -> dict[str, float]:
    """``{target: MAE}`` from ``equigraph evaluate``'s lines
    ``test MAE of NAME (N graphs): VALUE UNIT ...``."""
    found = {m.group(1): float(m.group(2))
             for m in re.finditer(r"^test MAE of (\S+) \(\d+ graphs\): (\S+) ", output, flags=re.M)}
    if not found:
        raise SystemExit("equigraph evaluate printed no 'test MAE of' line")
    return found


def logged_mae(result: dict, target: str) -> float:
    """The trainer's own test MAE of ``target`` in ``result.json`` (NaN when it logged another metric)."""
    return float(result["metrics"][target].get("test_mae", float("nan")))


def composition(graphs, max_z: int) -> torch.Tensor:
    return torch.stack([torch.bincount(d.z.long(), minlength=max_z)[:max_z].double() for d in graphs])


def references(splits) -> dict[str, dict[str, float]]:
    """Test MAEs (meV/atom, meV/Å) of the two untrained references, on the run's splits."""
    train, test = list(splits.graphs("train")), list(splits.graphs("test"))
    max_z = 1 + max(int(d.z.max()) for d in train + test)
    comp_train, comp_test = composition(train, max_z), composition(test, max_z)
    e_train = torch.tensor([float(d.energy) for d in train], dtype=torch.float64)
    e_test = torch.tensor([float(d.energy) for d in test], dtype=torch.float64)
    n_train, n_test = comp_train.sum(1), comp_test.sum(1)
    unseen = (comp_test.sum(0) > 0) & (comp_train.sum(0) == 0)
    if bool(unseen.any()):
        raise SystemExit(f"test split holds elements {unseen.nonzero().flatten().tolist()} absent from train")
    ref = torch.linalg.lstsq(comp_train, e_train.unsqueeze(-1), driver="gelsd").solution.squeeze(-1)
    zero_forces = float(torch.cat([d.forces.double().abs().reshape(-1) for d in test]).mean()) * 1e3
    per_atom = float((e_train / n_train).mean())
    return {
        REFERENCE: {"energy_mae": float(((comp_test @ ref - e_test) / n_test).abs().mean()) * 1e3,
                    "force_mae": zero_forces},
        MEAN: {"energy_mae": float((e_test / n_test - per_atom).abs().mean()) * 1e3, "force_mae": zero_forces},
    }


def predict_test(run_dir: Path, splits):
    """EGNN predictions on the test split from the saved ``model.pt`` (per-atom energies
    and force components, eV and eV/Å) beside the EMT labels."""
    from equigraph.models import load
    from equigraph.models.predict import predict

    model = load(run_dir / "model.pt")
    test = list(splits.graphs("test"))
    out = predict(model, test, batch_size=32, outputs=["energy", "forces"])
    natoms = torch.tensor([d.num_nodes for d in test], dtype=torch.float64)
    return {
        "energy_pred": out["energy"].double().reshape(-1) / natoms,
        "energy_true": torch.tensor([float(d.energy) for d in test], dtype=torch.float64) / natoms,
        "forces_pred": out["forces"].double().reshape(-1),
        "forces_true": torch.cat([d.forces.double().reshape(-1) for d in test]),
    }


def plot(pred: dict, refs: dict, metrics_csv: Path, out_png: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from equigraph.train import read_metrics

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.3))
    e_mae = float((pred["energy_pred"] - pred["energy_true"]).abs().mean()) * 1e3
    f_mae = float((pred["forces_pred"] - pred["forces_true"]).abs().mean()) * 1e3
    for ax, key, label, mae, unit in ((axes[0], "energy", "energy per atom (eV/atom)", e_mae, "meV/atom"),
                                      (axes[1], "forces", "force components (eV/Å)", f_mae, "meV/Å")):
        x, y = pred[f"{key}_true"].numpy(), pred[f"{key}_pred"].numpy()
        lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        pad = 0.03 * (hi - lo)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="grey", lw=1, ls="--")
        ax.scatter(x, y, s=6 if key == "energy" else 2, alpha=0.6, lw=0)
        ax.set_xlabel(f"EMT {label}")
        ax.set_ylabel(f"EGNN {label}")
        ax.set_title(f"test {key}: MAE {mae:.3g} {unit}")
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
    series = read_metrics(metrics_csv)
    ax = axes[2]
    for key, label, ref_key, color in (("val_energy_mae", "energy (meV/atom)", "energy_mae", "C0"),
                                       ("val_forces_mae", "forces (meV/Å)", "force_mae", "C1")):
        points = series.get(key, [])
        if points:
            ax.plot([e + 1 for e, _ in points], [v for _, v in points], color=color, label=f"EGNN {label}")
        ax.axhline(refs[REFERENCE][ref_key], color=color, ls=":", lw=1,
                   label=f"reference {label.split()[0]}")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation MAE")
    ax.set_title("validation MAE per epoch")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.suptitle(title)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/emt_egnn.yaml")
    parser.add_argument("--out", default=None, help="run folder parent (default: runs/bench_emt_forces[_quick])")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads of the training process")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="extra config override passed to `equigraph train` (repeatable)")
    parser.add_argument("--quick", action="store_true", help="plumbing check: 40 structures, 1 epoch, tiny model")
    parser.add_argument("--results-dir", default=None,
                        help="where NAME.{json,md,png} go (default: benchmarks/results; with --quick, the run folder)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out or f"runs/bench_{NAME}{'_quick' if args.quick else ''}")
    overrides = [f"out_dir={out}", f"train.num_threads={args.threads}", "train.progress_bar=false",
                 *(QUICK if args.quick else []), *args.overrides]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1"}

    train_out, train_wall = run_cli(["train", args.config, *overrides], env)
    run_dir = run_folder(train_out)
    result = json.loads((run_dir / "result.json").read_text())
    eval_out, _ = run_cli(["evaluate", str(run_dir), "--split", "test"], env)
    cli_mae = parse_evaluate(eval_out)

    from equigraph.datasets.registry import build_splits
    from equigraph.models import load
    from equigraph.train.run import dataset_options

    meta = load(run_dir / "model.pt").metadata
    splits = build_splits(dataset_options(meta["data"]))
    refs = references(splits)
    pred = predict_test(run_dir, splits)
    egnn = {"energy_mae": float((pred["energy_pred"] - pred["energy_true"]).abs().mean()) * 1e3,
            "force_mae": float((pred["forces_pred"] - pred["forces_true"]).abs().mean()) * 1e3}
    # model.pt predictions and `equigraph evaluate` must agree (it prints 4 significant digits).
    for ours, cli in ((egnn["energy_mae"], cli_mae["energy"]), (egnn["force_mae"], cli_mae["forces"])):
        if abs(ours - cli) > 1e-3 * abs(cli) + 1e-6:
            raise SystemExit(f"model.pt predictions give MAE {ours:.6g}, `equigraph evaluate` {cli:.6g}")

    counts = {s: len(getattr(splits, s)) for s in ("train", "val", "test")}
    config = meta["config"]
    mm = config["model"]["model"]
    setting = (f"EMT {'/'.join(data_cfg.get('elements', []))}, {counts['train']}/{counts['val']}/{counts['test']} "
               f"structures, {result['epochs']} epochs")
    rows = [row(EGNN, setting, "energy_mae", egnn["energy_mae"], "meV/atom", params=result["num_parameters"]),
            row(EGNN, setting, "force_mae", egnn["force_mae"], "meV/Å", params=result["num_parameters"])]
    for name in (REFERENCE, MEAN):
        rows.append(row(name, setting, "energy_mae", refs[name]["energy_mae"], "meV/atom"))
        rows.append(row(name, setting, "force_mae", refs[name]["force_mae"], "meV/Å"))
    rows += [
        row(EGNN, setting, "training time (train command, wall)", train_wall, "s"),
        row(EGNN, setting, "epochs", result["epochs"], ""),
        row(EGNN, setting, "time/epoch", result["seconds_per_epoch"], "s"),
        row(EGNN, setting, "throughput (train)", result["graphs_per_second"], "structures/s"),
        row(EGNN, setting, "parameters", result["num_parameters"], ""),
        *(row("data", setting, f"structures ({s})", n, "") for s, n in counts.items()),
    ]
    results_dir = Path(args.results_dir) if args.results_dir else (run_dir if args.quick else RESULTS)
    title = (f"EGNN force field on EMT {'/'.join(data_cfg.get('elements', []))} "
             f"({counts['train']} train structures, {result['epochs']} epochs)")
    png = plot(pred, refs, Path(result["metrics_csv"]) if Path(result["metrics_csv"]).is_absolute()
               else ROOT / result["metrics_csv"], results_dir / f"{NAME}.png", title)
    train_cmd = "equigraph train " + " ".join([args.config, *overrides])
    notes = f"""
Test split of the `emt` dataset ({counts['test']} structures, {int(pred['forces_true'].numel() // 3)} atoms):
energy MAE per atom, averaged over structures; force MAE over every Cartesian component.

| model | energy MAE (meV/atom) | force MAE (meV/Å) |
|---|---|---|
| {EGNN} ({result['num_parameters']} parameters) | {egnn['energy_mae']:.3g} | {egnn['force_mae']:.3g} |
| {REFERENCE} | {refs[REFERENCE]['energy_mae']:.3g} | {refs[REFERENCE]['force_mae']:.3g} |
| {MEAN} | {refs[MEAN]['energy_mae']:.3g} | {refs[MEAN]['force_mae']:.3g} |

- Training: `{train_cmd}` (through the CLI, config `{args.config}`), then
  `equigraph evaluate {run_dir.relative_to(ROOT) if run_dir.is_relative_to(ROOT) else run_dir}`;
  {result['epochs']} epochs in {train_wall:.0f} s wall for the whole command (data, training,
  test, saving), {result['seconds_per_epoch']:.1f} s/epoch, {args.threads} thread(s) on a shared CPU
  (times include contention from other jobs).
- Model: `force_field` around EGNN ({mm.get('num_layers')} layers, {mm.get('hidden_channels')} channels,
  {mm.get('interaction_graph')} Å radius graph with a smooth envelope, per-element energy
  references), forces $-\\partial E/\\partial x$ by autograd; loss
  {', '.join(f"{k}: {v.get('loss')} x {v.get('weight')}" for k, v in config.get('targets', {}).items())}
  on errors scaled by the train split's MADs; {config['train']['optimizer']} lr {config['train']['lr']},
  {config['train']['scheduler']} schedule, EMA {config['train']['ema_decay']}, batch {config['data']['batch_size']};
  the checkpoint with the best validation loss is tested.
- The MAEs are recomputed from the run's `model.pt` (`equigraph.models.load` +
  `equigraph.models.predict.predict`) and agree with `equigraph evaluate` (energy
  {cli_mae['energy']:.4g}, forces {cli_mae['forces']:.4g}); the trainer's own `result.json`
  logs energy {logged_mae(result, 'energy'):.4g} and forces
  {logged_mae(result, 'forces'):.4g} (batch means weighted by structures, not atoms).
- References need no training: `{REFERENCE}` fits one energy per element by least squares
  on the train split's compositions and total energies (the EGNN starts from exactly
  this); `{MEAN}` predicts the train split's mean energy per atom. Both predict zero forces.
  The per-element reference is no better than the mean: the spread of the energies is the
  surface energy of the slabs (about 0.24 eV/atom above the bulk structures), not composition.
- One seed; the data are EMT (a many-body potential), not DFT.

![parity plots and validation curve]({png.name})
"""
    extra = {"run": str(run_dir), "train_command": train_cmd, "config": args.config}
    if results_dir.resolve() == RESULTS.resolve():
        write(NAME, rows, notes, extra=extra)
        LOGS.mkdir(exist_ok=True)
        shutil.copy(run_dir / "result.json", LOGS / f"{NAME}_result.json")
        shutil.copy(run_dir / "config.yaml", LOGS / f"{NAME}_config.yaml")
        shutil.copy(run_dir / "logs" / "metrics.csv", LOGS / f"{NAME}_metrics.csv")
    else:
        import datetime
        import shlex

        results_dir.mkdir(parents=True, exist_ok=True)
        doc = {"command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]),
               "machine": machine(), "date": datetime.datetime.now().isoformat(timespec="seconds"),
               "rows": rows, **extra}
        (results_dir / f"{NAME}.json").write_text(json.dumps(doc, indent=2) + "\n")
        (results_dir / f"{NAME}.md").write_text(render(doc, NAME, notes))
    print(f"[{NAME}] EGNN energy {egnn['energy_mae']:.4g} meV/atom, forces {egnn['force_mae']:.4g} meV/Å; "
          f"reference energy {refs[REFERENCE]['energy_mae']:.4g} meV/atom, zero forces "
          f"{refs[REFERENCE]['force_mae']:.4g} meV/Å; train command {train_wall:.0f} s; "
          f"results in {results_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
