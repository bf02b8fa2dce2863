"""OC20 tasks on OC20-like EMT data: S2EF (energy + forces) and IS2RE (relaxed energy) for
equigraph energy models side by side under one budget, with OC20's metrics.

The data are :func:`equigraph.datasets.oc20_generate.generate_oc20_emt` (adsorbates on fcc
metal slabs relaxed with ASE's EMT, written in fairchem's LMDB layout and read back by
:class:`equigraph.datasets.OC20`), generated once and shared by every model. Each model is
trained with :func:`equigraph.train.fit` from the task's config (``configs/oc20_s2ef_egnn.yaml``,
``configs/oc20_is2re_egnn.yaml``: data, targets, optimiser, epochs, seed) with its own
``model.model`` from :data:`MODELS`, in its own process (so that its peak memory is its
own), then scored on the test split from its saved ``model.pt``:

- S2EF: energy MAE (eV per structure), force MAE (eV/Å), force cosine, EwT and EFwT, on the
  free atoms (``fixed`` atoms are not scored, fairchem's ``eval_on_free_atoms``);
- IS2RE, direct: the energy model (``force_field`` with ``forces: false``) reads the initial
  structure; MAE, EwT;
- IS2RE by relaxation: each test system relaxed by the S2EF model through
  :class:`equigraph.calculators.EquigraphCalculator` (BFGS, fmax 0.05 eV/Å, at most 100
  steps, fixed atoms fixed), scored on the final energy;
- throughput: training structures/s and atoms/s (the trainer's epoch timer), inference
  structures/s and atoms/s (test split, batches of 32, forces included, graphs built on the
  fly); peak resident memory of the process (``resource.getrusage``) and its value before
  training (imports and data);
- a reference without training: per-element energies fitted by least squares on the train
  split, zero forces.

The OC20 leaderboard numbers are listed beside, for orientation only: they are on OC20's
DFT data, a different and much harder dataset.

Adding a model is one line in :data:`MODELS` (its energy-model spec).

    python benchmarks/oc20.py                  # the benchmark (~1 h for the four models, 1 thread)
    python benchmarks/oc20.py --quick          # plumbing check, results in /tmp
    python benchmarks/oc20.py --models SchNet --tasks is2re
    python benchmarks/oc20.py --models TFN     # one model; the others' rows are kept

A run of some models or tasks is merged into the existing results: the (task, model) pairs
it did not rerun are kept from ``results/oc20.json`` (which must have been made under the
same budget; ``--fresh`` starts the results over instead), so no earlier row is dropped.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _results import render, row, write  # noqa: E402

NAME = "oc20"
LOGS = HERE / "logs"
#: Energy models, by display name: the ``model.model`` spec put into each task's config.
MODELS = {
    "EGNN": {"name": "egnn", "hidden_channels": 32, "num_layers": 3, "out_channels": 1, "reduce": "sum",
             "atom_ref": True, "update_coords": False, "interaction_graph": 6.0},
    "SchNet": {"name": "schnet", "hidden_channels": 32, "num_filters": 32, "num_interactions": 3,
               "num_gaussians": 50, "cutoff": 6.0, "out_channels": 1, "reduce": "sum", "atom_ref": True},
    # EGNN's choices (6 Å radius graph, smooth envelope, sum readout without post-pool MLP,
    # atom_ref, 3 layers); widths cut so that 20 S2EF epochs fit ~15 min on one thread:
    # per edge, SEGNN's and TFN's tensor products cost ~6x and ~3x EGNN's message MLP.
    "SEGNN": {"name": "segnn", "hidden_channels": 16, "num_layers": 3, "lmax_h": 1, "lmax_attr": 1,
              "distance": "length", "out_channels": 1, "reduce": "sum", "graph_mlp": False, "atom_ref": True,
              "interaction_graph": 6.0, "envelope": True},
    # TFN sums raw messages: avg_num_neighbors is the mean in-degree of the 6 Å periodic graph
    # on the train split (41.2), as NequIP normalises (without it the first energies are ~10x off).
    "TFN": {"name": "tfn", "hidden_irreps": "16x0e+8x1o", "num_layers": 3, "lmax": 1, "radial_hidden": 32,
            "avg_num_neighbors": 41.0, "out_channels": 1, "reduce": "sum", "atom_ref": True,
            "interaction_graph": 6.0, "envelope": True},
}
#: The config each task starts from (its model.model is replaced).
CONFIGS = {"s2ef": ROOT / "configs" / "oc20_s2ef_egnn.yaml", "is2re": ROOT / "configs" / "oc20_is2re_egnn.yaml"}
#: The shared budget: data size and epochs, the same for every model.
BUDGET = {"num_systems": 200, "max_steps": 10, "s2ef_epochs": 20, "is2re_epochs": 60}
QUICK = {"num_systems": 12, "max_steps": 3, "s2ef_epochs": 1, "is2re_epochs": 1}
#: OC20 leaderboard / papers, on OC20's DFT data (a different dataset).
LEADERBOARD = [
    ("SchNet", "IS2RE direct, val ID", "energy_mae", 0.64, "eV", "Chanussot et al. 2021 (OC20), Table 5"),
    ("SEGNN", "IS2RE direct, val ID", "energy_mae", 0.533, "eV", "Brandstetter et al. 2022 (SEGNN)"),
    ("GemNet-OC", "S2EF all, test", "forces_mae", 0.021, "eV/Å", "Gasteiger et al. 2022 (GemNet-OC)"),
]
RELAX_FMAX, RELAX_STEPS = 0.05, 100


def _register() -> None:
    """Make ``data.name: oc20`` and ``model.name: schnet`` available (no-ops once the
    registries list them)."""
    import equigraph.models.schnet  # noqa: F401  (registers "schnet")
    from equigraph.datasets.oc20 import oc20_splits
    from equigraph.datasets.registry import DATASETS

    if "oc20" not in DATASETS:
        DATASETS.register("oc20", oc20_splits)


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _config(task: str, model: str, budget: dict, out_dir: str, root: str | None) -> dict:
    config = yaml.safe_load(CONFIGS[task].read_text())
    config["model"]["model"] = copy.deepcopy(MODELS[model])
    config["out_dir"] = out_dir
    config["data"].update(num_systems=budget["num_systems"], max_steps=budget["max_steps"])
    if root is not None:
        config["data"]["root"] = root
    config["train"].update(max_epochs=budget[f"{task}_epochs"], progress_bar=False)
    return config


def _predict(model, dataset, batch_size: int = 32):
    """Energies, forces (when returned), batch vectors and wall time over ``dataset``."""
    from torch_geometric.loader import DataLoader

    energies, forces, batches, free, natoms = [], [], [], [], []
    start = time.perf_counter()
    offset = 0
    for batch in DataLoader(dataset, batch_size=batch_size):
        out = model(batch)
        energies.append(out["energy"].detach().double().reshape(-1))
        if "forces" in out:
            forces.append(out["forces"].detach().double())
        batches.append(batch.batch + offset)
        free.append(~batch.fixed)
        natoms.append(torch.bincount(batch.batch, minlength=batch.num_graphs))
        offset += batch.num_graphs
    seconds = time.perf_counter() - start
    return {"energy": torch.cat(energies), "forces": torch.cat(forces) if forces else None,
            "batch": torch.cat(batches), "free": torch.cat(free), "natoms": torch.cat(natoms), "seconds": seconds}


def _relax_is2re(model_file: str, splits_is2re) -> dict:
    """IS2RE by relaxation: each test system relaxed with the S2EF model."""
    from ase import Atoms
    from ase.constraints import FixAtoms
    from ase.optimize import BFGS

    from equigraph.calculators import EquigraphCalculator
    from equigraph.datasets.oc20_metrics import is2re_metrics

    calc = EquigraphCalculator(model_file)
    pred, true, steps, converged = [], [], [], 0
    start = time.perf_counter()
    for d in splits_is2re.graphs("test"):
        atoms = Atoms(numbers=d.z.numpy(), positions=d.pos.double().numpy(), cell=d.cell[0].double().numpy(),
                      pbc=d.pbc[0].numpy(), tags=d.tags.numpy())
        atoms.set_constraint(FixAtoms(mask=d.fixed.numpy()))
        atoms.calc = calc
        opt = BFGS(atoms, logfile=None, maxstep=0.2)
        converged += bool(opt.run(fmax=RELAX_FMAX, steps=RELAX_STEPS))
        steps.append(opt.nsteps)
        pred.append(atoms.get_potential_energy())
        true.append(float(d.energy_relaxed))
    seconds = time.perf_counter() - start
    metrics = is2re_metrics(torch.tensor(pred), torch.tensor(true))
    metrics.update(relax_seconds=seconds, relax_steps_mean=sum(steps) / len(steps),
                   relax_converged=converged / len(steps), relax_neighbor_list_builds=calc.neighbor_list_builds)
    return metrics


def worker(task: str, model: str, budget: dict, out_dir: str, root: str | None, threads: int, result: Path) -> None:
    """Train and score one model on one task (run in its own process)."""
    torch.set_num_threads(threads)
    _register()
    from equigraph.datasets.oc20_metrics import is2re_metrics, s2ef_metrics
    from equigraph.datasets.registry import build_splits
    from equigraph.models import load
    from equigraph.train import fit
    from equigraph.train.run import dataset_options

    config = _config(task, model, budget, out_dir, root)
    splits = build_splits(dataset_options(config["data"]))
    rss_data = _rss_mib()
    start = time.perf_counter()
    fit_result = fit(config)
    train_wall = time.perf_counter() - start
    rss_train = _rss_mib()
    net = load(fit_result.model_file)
    test = splits.test
    pred = _predict(net, test)
    natoms_test = float(pred["natoms"].sum())
    mean_atoms_train = sum(d.num_nodes for d in splits.graphs("train")) / len(splits.train)
    out = {"task": task, "model": model, "run": fit_result.out_dir, "model_file": fit_result.model_file,
           "epochs": fit_result.epochs, "train_wall_s": train_wall, "seconds_per_epoch": fit_result.seconds_per_epoch,
           "train_structures_per_s": fit_result.graphs_per_second,
           "train_atoms_per_s": fit_result.graphs_per_second * mean_atoms_train,
           "infer_structures_per_s": len(test) / pred["seconds"], "infer_atoms_per_s": natoms_test / pred["seconds"],
           "num_parameters": fit_result.num_parameters, "num_train": len(splits.train), "num_test": len(test),
           "rss_before_training_mib": rss_data, "peak_rss_train_mib": rss_train,
           "spec": config["model"]["model"], "threads": threads}
    if task == "s2ef":
        e_true = torch.cat([d.energy.double() for d in splits.graphs("test")])
        f_true = torch.cat([d.forces.double() for d in splits.graphs("test")])
        out["metrics"] = s2ef_metrics(pred["energy"], e_true, pred["forces"], f_true, pred["batch"], pred["free"])
        is2re_cfg = {**data_cfg, "task": "is2re"}
        out["relaxation"] = _relax_is2re(fit_result.model_file, build_splits(is2re_cfg))
    else:
        e_true = torch.cat([d.energy_relaxed.double() for d in splits.graphs("test")])
        out["metrics"] = is2re_metrics(pred["energy"], e_true)
    out["peak_rss_mib"] = _rss_mib()
    result.write_text(json.dumps(out, indent=2) + "\n")


def reference(budget: dict, root: str | None) -> dict:
    """Test metrics of per-element energies fitted on the train split (no training), with
    zero forces."""
    from equigraph.datasets.oc20_metrics import is2re_metrics, s2ef_metrics
    from equigraph.datasets.registry import build_splits

    out = {}
    for task, key in (("s2ef", "energy"), ("is2re", "energy_relaxed")):
        data = {"name": "oc20", "task": task, "num_systems": budget["num_systems"], "max_steps": budget["max_steps"]}
        if root is not None:
            data["root"] = root
        splits = build_splits(data)
        train, test = list(splits.graphs("train")), list(splits.graphs("test"))
        comp = lambda gs: torch.stack([torch.bincount(d.z, minlength=119).double() for d in gs])  # noqa: E731
        e_train = torch.cat([d[key].double() for d in train]).unsqueeze(-1)
        ref = torch.linalg.lstsq(comp(train), e_train, driver="gelsd").solution
        pred = (comp(test) @ ref).reshape(-1)
        e_test = torch.cat([d[key].double() for d in test])
        if task == "s2ef":
            forces = torch.cat([d.forces.double() for d in test])
            batch = torch.cat([torch.full((d.num_nodes,), i) for i, d in enumerate(test)])
            free = torch.cat([~d.fixed for d in test])
            out[task] = s2ef_metrics(pred, e_test, torch.zeros_like(forces), forces, batch, free)
        else:
            out[task] = is2re_metrics(pred, e_test)
    return out


def merge_results(new: list[dict], previous: dict | None, budget: dict, fresh: bool = False) -> tuple[list, list]:
    """This run's per-(task, model) results merged with ``previous`` (an earlier
    ``results/oc20.json``): every pair this run did not rerun is kept. Returns the merged
    results (task order S2EF, IS2RE; :data:`MODELS` order, then any other model) and the
    earlier runs' records. An earlier file made under another budget is refused, as merging
    it would mix protocols, unless ``fresh`` (then it is replaced whole)."""
    if previous is None or fresh:
        return _ordered(new), []
    if previous.get("budget") != budget:
        raise ValueError(f"results/{NAME}.json was made with budget {previous.get('budget')}, this run with "
                         f"{budget}: rerun every model, or pass --fresh to replace the earlier results")
    rerun = {(r["task"], r["model"]) for r in new}
    kept = [r for r in previous.get("results", []) if (r["task"], r["model"]) not in rerun]
    runs = previous.get("runs") or [{"command": previous.get("command"), "date": previous.get("date"),
                                     "models": sorted({r["model"] for r in previous.get("results", [])}),
                                     "total_seconds": previous.get("total_seconds")}]
    return _ordered(kept + new), list(runs)


def _ordered(results: list[dict]) -> list[dict]:
    models = list(MODELS) + sorted({r["model"] for r in results} - set(MODELS))
    tasks = ["s2ef", "is2re"]
    return sorted(results, key=lambda r: (tasks.index(r["task"]), models.index(r["model"])))


def _fmt(v, digits=3):
    return f"{v:.{digits}g}" if isinstance(v, float) else str(v)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--tasks", nargs="+", default=["s2ef", "is2re"], choices=["s2ef", "is2re"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="plumbing check: tiny data, one epoch")
    parser.add_argument("--root", default=None, help="data cache (default: $EQUIGRAPH_CACHE/oc20_emt)")
    parser.add_argument("--out", default=None, help="run folders (default: runs/bench_oc20[_quick])")
    parser.add_argument("--results-dir", default=None, help="default: benchmarks/results (--quick: the run folder)")
    parser.add_argument("--fresh", action="store_true",
                        help="replace the results file instead of keeping the rows of models not rerun")
    parser.add_argument("--worker", nargs=3, metavar=("TASK", "MODEL", "RESULT_JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    budget = dict(QUICK if args.quick else BUDGET)
    out = Path(args.out or f"runs/bench_{NAME}{'_quick' if args.quick else ''}")
    root = args.root
    if args.quick and root is None:
        root = str(out / "data")
    if args.worker:
        task, model, result = args.worker
        worker(task, model, budget, str(out / f"{task}_{model.lower()}"), root, args.threads, Path(result))
        return 0

    results_dir = Path(args.results_dir) if args.results_dir else (out if args.quick else HERE / "results")
    previous_file = results_dir / f"{NAME}.json"
    previous = json.loads(previous_file.read_text()) if previous_file.exists() else None
    try:  # an earlier file of another budget is refused now, not after an hour of training
        merge_results([], previous, budget, fresh=args.fresh)
    except ValueError as exc:
        raise SystemExit(f"[{NAME}] {exc}") from None

    torch.set_num_threads(args.threads)
    _register()
    from equigraph.datasets.oc20_generate import generate_oc20_emt

    total_start = time.perf_counter()
    start = time.perf_counter()
    folder = generate_oc20_emt(root, num_systems=budget["num_systems"], max_steps=budget["max_steps"],
                               formats=("lmdb",))
    gen_seconds = time.perf_counter() - start
    manifest = json.loads((folder / "manifest.json").read_text())
    print(f"[{NAME}] data: {folder} ({manifest['frames']} S2EF frames, {gen_seconds:.0f} s)", flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1"}
    results = []
    out.mkdir(parents=True, exist_ok=True)
    for task in args.tasks:
        for model in args.models:
            path = out / f"result_{task}_{model.lower()}.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", task, model, str(path),
                   "--threads", str(args.threads), "--out", str(out)]
            if args.quick:
                cmd.append("--quick")
            if root is not None:
                cmd += ["--root", root]
            print(f"[{NAME}] {task} {model}: {' '.join(cmd)}", flush=True)
            t = time.perf_counter()
            rc = subprocess.run(cmd, cwd=ROOT, env=env).returncode
            if rc != 0:
                raise SystemExit(f"[{NAME}] {task} {model} failed with status {rc}")
            results.append(json.loads(path.read_text()))
            print(f"[{NAME}] {task} {model}: {time.perf_counter() - t:.0f} s, {results[-1]['metrics']}", flush=True)
    refs = reference(budget, root)
    total = time.perf_counter() - total_start
    new_results = results
    results, runs = merge_results(new_results, previous, budget, fresh=args.fresh)  # checked above
    kept = sorted({r["model"] for r in results} - {r["model"] for r in new_results})
    if kept:
        print(f"[{NAME}] kept the earlier results of {', '.join(kept)} from {previous_file}", flush=True)
    import datetime
    import shlex

    runs.append({"command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]),
                 "date": datetime.datetime.now().isoformat(timespec="seconds"), "models": list(args.models),
                 "tasks": list(args.tasks), "threads": args.threads, "total_seconds": total})
    shown = list(dict.fromkeys(r["model"] for r in results))

    setting = (f"EMT OC20-like, {budget['num_systems']} systems (<= {budget['max_steps']} BFGS steps), "
               f"split 80/10/10 by system")
    rows = []
    units = {"energy_mae": "eV", "energy_mse": "eV^2", "forces_mae": "eV/Å", "forces_cos": "",
             "energy_within_threshold": "fraction", "energy_forces_within_threshold": "fraction"}
    for r in results:
        task_setting = f"{setting}; {r['task'].upper()} direct, {r['epochs']} epochs, {r['num_train']} train"
        for metric, value in r["metrics"].items():
            rows.append(row(r["model"], task_setting, metric, value, units[metric], params=r["num_parameters"]))
        if "relaxation" in r:
            rel = r["relaxation"]
            for metric in ("energy_mae", "energy_within_threshold"):
                rows.append(row(r["model"], f"{setting}; IS2RE by relaxation with the S2EF model", metric,
                                rel[metric], units[metric]))
        for metric, unit in (("train_structures_per_s", "structures/s"), ("train_atoms_per_s", "atoms/s"),
                             ("infer_structures_per_s", "structures/s"), ("infer_atoms_per_s", "atoms/s"),
                             ("seconds_per_epoch", "s"), ("train_wall_s", "s"), ("peak_rss_mib", "MiB"),
                             ("rss_before_training_mib", "MiB")):
            rows.append(row(r["model"], task_setting, metric, r[metric], unit))
    for task, metrics in refs.items():
        for metric, value in metrics.items():
            rows.append(row("per-element reference (no training)", f"{setting}; {task.upper()}", metric, value,
                            units[metric]))
    for model, setting_lb, metric, value, unit, source in LEADERBOARD:
        rows.append(row(model, setting_lb, metric, value, unit,
                        dataset="OC20 DFT leaderboard: a DIFFERENT dataset, not comparable", source=source))

    by = {(r["task"], r["model"]): r for r in results}
    lines = ["## S2EF (test split, free atoms)", "",
             "| model | params | energy MAE (eV) | force MAE (eV/Å) | force cos | EwT | EFwT | train structures/s | "
             "train atoms/s | inference structures/s | inference atoms/s | s/epoch | peak RSS (MiB) |",
             "|" + "---|" * 13]
    for model in shown:
        r = by.get(("s2ef", model))
        if r:
            m = r["metrics"]
            lines.append(f"| {model} | {r['num_parameters']} | {_fmt(m['energy_mae'])} | {_fmt(m['forces_mae'])} | "
                         f"{_fmt(m['forces_cos'])} | {_fmt(m['energy_within_threshold'])} | "
                         f"{_fmt(m['energy_forces_within_threshold'])} | {_fmt(r['train_structures_per_s'])} | "
                         f"{_fmt(r['train_atoms_per_s'])} | {_fmt(r['infer_structures_per_s'])} | "
                         f"{_fmt(r['infer_atoms_per_s'])} | {_fmt(r['seconds_per_epoch'])} | "
                         f"{r['peak_rss_mib']:.0f} |")
    if "s2ef" in refs:
        m = refs["s2ef"]
        lines.append(f"| per-element reference, zero forces | 0 | {_fmt(m['energy_mae'])} | {_fmt(m['forces_mae'])} | "
                     f"{_fmt(m['forces_cos'])} | {_fmt(m['energy_within_threshold'])} | "
                     f"{_fmt(m['energy_forces_within_threshold'])} | | | | | | |")
    lines += ["", "## IS2RE (test split)", "",
              "| model | method | energy MAE (eV) | EwT | train structures/s | inference structures/s "
              "| peak RSS (MiB) |",
              "|" + "---|" * 7]
    for model in shown:
        r = by.get(("is2re", model))
        if r:
            m = r["metrics"]
            lines.append(f"| {model} | direct | {_fmt(m['energy_mae'])} | {_fmt(m['energy_within_threshold'])} | "
                         f"{_fmt(r['train_structures_per_s'])} | {_fmt(r['infer_structures_per_s'])} | "
                         f"{r['peak_rss_mib']:.0f} |")
        r = by.get(("s2ef", model))
        if r:
            rel = r["relaxation"]
            lines.append(f"| {model} | relaxation with its S2EF model ({rel['relax_steps_mean']:.0f} BFGS steps on "
                         f"average, {rel['relax_converged']:.0%} converged) | {_fmt(rel['energy_mae'])} | "
                         f"{_fmt(rel['energy_within_threshold'])} | | | |")
    if "is2re" in refs:
        m = refs["is2re"]
        lines.append(f"| per-element reference | no training | {_fmt(m['energy_mae'])} | "
                     f"{_fmt(m['energy_within_threshold'])} | | | |")
    lines += ["", "## OC20 leaderboard (OC20's DFT data: a DIFFERENT dataset, NOT comparable with the tables above)",
              "", "| model | task | metric | value | source |", "|---|---|---|---|---|"]
    for model, setting_lb, metric, value, unit, source in LEADERBOARD:
        lines.append(f"| {model} | {setting_lb} | {metric} | {value} {unit} | {source} |")
    first = results[0] if results else {}
    # A merged model may have been trained with different specs per task: each is listed.
    spec_of: dict = {}
    for r in results:
        spec_of.setdefault(r["model"], {}).setdefault(json.dumps(r.get("spec", MODELS.get(r["model"]))), []).append(
            r["task"].upper())
    specs = "; ".join(f"{model}{'' if len(by_spec) == 1 else ' (' + ', '.join(tasks) + ')'}: `{spec}`"
                      for model, by_spec in spec_of.items() for spec, tasks in by_spec.items())
    wall = "; ".join(f"{', '.join(run['models'])}: {run['total_seconds']:.0f} s ({run['total_seconds'] / 60:.1f} min, "
                     f"{run['date']})" for run in runs if run.get("total_seconds") is not None)
    n_is2re_test = next((r["num_test"] for r in results if r["task"] == "is2re"), "no")
    notes = "\n".join(lines) + f"""

- Data: {setting}; {manifest['frames']} S2EF frames (train/val/test), generated in
  {manifest.get('generation_seconds', gen_seconds):.0f} s, read from fairchem-layout LMDBs by
  `equigraph.datasets.OC20`. Energies are adsorption energies (EMT, clean-slab and
  isolated-atom references), so EwT/EFwT thresholds keep OC20's meaning in eV.
- One budget for every model: same data, configs ({', '.join(str(p.relative_to(ROOT)) for p in CONFIGS.values())},
  model replaced), seed, {budget['s2ef_epochs']} S2EF epochs, {budget['is2re_epochs']} IS2RE epochs,
  {args.threads} thread(s). Models: {specs}.
- Throughput: training from the trainer's epoch timer (structures/s; atoms/s = that times the
  mean train structure size), inference over the test split in batches of 32 with forces and
  on-the-fly periodic graphs; a shared 2-core machine, so times include contention. Peak RSS
  is each model's own process (training and scoring; {first.get('rss_before_training_mib', 0):.0f} MiB
  before training for the first, most of it torch and Lightning).
- IS2RE by relaxation: BFGS (fmax {RELAX_FMAX} eV/Å, at most {RELAX_STEPS} steps) with
  `EquigraphCalculator` and the S2EF model; the final energy is the prediction.
- Reading the tables: the per-element reference row is what composition alone gives. On this
  data the relaxed adsorption energy is set mostly by the adsorbate and the metal, so the
  direct IS2RE models have little left to learn at this size ({n_is2re_test} test systems:
  differences of a few meV are noise); forces are where the models are tested.
- Wall time of each run (models trained one after the other, data and reference included): {wall}.
"""
    extra = {"budget": budget, "data": str(folder), "total_seconds": total, "runs": runs, "results": results,
             "reference": refs}
    if results_dir.resolve() == (HERE / "results").resolve():
        write(NAME, rows, notes, extra=extra)
        LOGS.mkdir(exist_ok=True)
        for r in new_results:
            (LOGS / f"{NAME}_{r['task']}_{r['model'].lower()}.json").write_text(json.dumps(r, indent=2) + "\n")
    else:
        from _results import machine

        results_dir.mkdir(parents=True, exist_ok=True)
        doc = {"command": runs[-1]["command"], "machine": machine(), "date": runs[-1]["date"], "rows": rows, **extra}
        (results_dir / f"{NAME}.json").write_text(json.dumps(doc, indent=2) + "\n")
        (results_dir / f"{NAME}.md").write_text(render(doc, NAME, notes))
    print(f"[{NAME}] done in {total:.0f} s; results in {results_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
