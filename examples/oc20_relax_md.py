"""Train (or load) a small force field on OC20-like S2EF data, then relax an adsorbate on a
slab and run a short Langevin MD with it through ASE (equigraph.calculators.EquigraphCalculator).

The data are the OC20-like EMT data of equigraph.datasets.oc20_generate (adsorbates on
fcc metal slabs relaxed with ASE's EMT, written in fairchem's LMDB layout and read back
by equigraph.datasets.OC20); the structure relaxed here is an initial structure of the
IS2RE test split, so the model's relaxed energy can be compared with EMT's.

    python examples/oc20_relax_md.py --quick             # seconds: tiny data, 1 epoch
    python examples/oc20_relax_md.py                     # minutes: 200 systems, 20 epochs
    python examples/oc20_relax_md.py --model runs/oc20_s2ef_egnn/version_0/model.pt
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
QUICK = ["data.num_systems=12", "data.max_steps=4", "train.max_epochs=1", "train.ema_decay=null",
         "model.model.hidden_channels=16", "model.model.num_layers=2", "data.batch_size=8"]


def register_oc20() -> None:
    """Make ``data.name: oc20`` and ``model.name: schnet`` available (no-ops once the
    registries list them)."""
    import equigraph.models.schnet  # noqa: F401
    from equigraph.datasets.oc20 import oc20_splits
    from equigraph.datasets.registry import DATASETS

    if "oc20" not in DATASETS:
        DATASETS.register("oc20", oc20_splits)


def train(config: str, out: str, quick: bool, epochs: int | None) -> Path:
    from equigraph.train import fit

    overrides = [f"out_dir={out}", "train.progress_bar=false", *(QUICK if quick else [])]
    if epochs is not None:
        overrides.append(f"train.max_epochs={epochs}")
    result = fit(config, overrides)
    print(f"trained {result.epochs} epochs: test energy MAE {result.metrics['energy']['test_mae']:.4g} "
          f"{result.metrics['energy']['unit']}, forces {result.metrics['forces']['test_mae']:.4g} "
          f"{result.metrics['forces']['unit']}; model: {result.model_file}")
    return Path(result.model_file)


def initial_structure(data_cfg: dict):
    """The first IS2RE test system of the run's data, as ase.Atoms with its fixed atoms,
    and EMT's relaxed (adsorption) energy for it."""
    from ase import Atoms
    from ase.constraints import FixAtoms

    from equigraph.datasets.oc20 import oc20_splits

    options = {k: data_cfg[k] for k in ("num_systems", "max_steps", "seed", "root") if k in data_cfg}
    d = oc20_splits(task="is2re", **options).test[0]
    atoms = Atoms(numbers=d.z.numpy(), positions=d.pos.double().numpy(), cell=d.cell[0].double().numpy(),
                  pbc=d.pbc[0].numpy(), tags=d.tags.numpy())
    atoms.set_constraint(FixAtoms(mask=d.fixed.numpy()))
    return atoms, float(d.energy_relaxed)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny data, one epoch, short runs (seconds)")
    parser.add_argument("--model", default=None, help="a saved model.pt (or run folder) instead of training")
    parser.add_argument("--config", default=str(ROOT / "configs" / "oc20_s2ef_egnn.yaml"))
    parser.add_argument("--out", default="runs/oc20_relax_md")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--md-steps", type=int, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    register_oc20()

    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import thermalize_momenta
    from ase.optimize import BFGS

    from equigraph.calculators import EquigraphCalculator
    from equigraph.models import load

    start = time.perf_counter()
    path = Path(args.model) if args.model else train(args.config, args.out, args.quick, args.epochs)
    model = load(path / "model.pt" if path.is_dir() else path)
    data_cfg = (model.metadata.get("data") or {})
    if not data_cfg:
        from equigraph.train.config import load_config

        data_cfg = load_config(args.config, QUICK if args.quick else [])["data"]
    atoms, emt_relaxed = initial_structure(data_cfg)
    calc = EquigraphCalculator(model, device=args.device)
    atoms.calc = calc

    e0 = atoms.get_potential_energy()
    opt = BFGS(atoms, logfile=None, maxstep=0.2)
    steps = 10 if args.quick else 200
    converged = opt.run(fmax=0.05, steps=steps)
    e1 = atoms.get_potential_energy()
    fmax = float(np.linalg.norm(atoms.get_forces(), axis=1).max())
    print(f"relaxation of {atoms.get_chemical_formula()} ({'converged' if converged else 'stopped'} after "
          f"{opt.nsteps} steps, max force {fmax:.3f} eV/Å): model energy {e0:.3f} -> {e1:.3f} eV; "
          f"EMT's relaxed adsorption energy {emt_relaxed:.3f} eV")

    md_steps = args.md_steps or (20 if args.quick else 500)
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dyn = Langevin(atoms, timestep=1.0 * units.fs, temperature_K=300, friction=0.02, rng=np.random.default_rng(0))
    log_every = max(1, md_steps // 5)

    def report():
        print(f"  MD step {dyn.nsteps:4d}: T = {atoms.get_temperature():6.1f} K, "
              f"E_pot = {atoms.get_potential_energy():8.3f} eV, E_tot = {atoms.get_total_energy():8.3f} eV, "
              f"neighbour-list builds {calc.neighbor_list_builds}")

    dyn.attach(report, interval=log_every)
    dyn.run(md_steps)
    ads = atoms.get_tags() == 2
    height = float(atoms.positions[ads, 2].mean() - atoms.positions[~ads, 2].max())
    print(f"Langevin MD, 300 K, {md_steps} fs: adsorbate {height:.2f} Å above the top slab atom; "
          f"{time.perf_counter() - start:.1f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
