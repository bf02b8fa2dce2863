"""The ``equigraph`` command line: ``train``, ``evaluate``, ``predict`` and ``info``.

Usage errors (a bad config key, an invalid SMILES, a missing file) print one line on stderr
and exit with status 1, without a traceback. Heavy imports happen inside the commands so
that ``equigraph info`` and ``--help`` stay quick.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

# Errors that mean "the input is wrong", reported as one line; anything else is a bug and
# keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, FloatingPointError,
                                                 FileExistsError)

PACKAGES = (
    ("equigraph", "equigraph"),
    ("torch", "torch"),
    ("torch_geometric", "torch_geometric"),
    ("e3nn", "e3nn"),
    ("ase", "ase"),
    ("rdkit", "rdkit"),
    ("lightning", "lightning"),
    ("vesin", "vesin"),
)
OPTIONAL_BACKENDS = ("torch_scatter", "torch_cluster", "torch_sparse", "pyg_lib")


def _version(distribution: str, module: str) -> str:
    from importlib import metadata, util

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        if util.find_spec(module) is None:
            return "not installed"
        return getattr(__import__(module), "__version__", "installed")


def info_lines() -> list[str]:
    """The lines printed by ``equigraph info``: versions, devices, optional backends."""
    from importlib import util

    import torch

    lines = ["equigraph environment", f"  python            {sys.version.split()[0]}"]
    for dist, module in PACKAGES:
        lines.append(f"  {dist:<17} {_version(dist, module)}")
    lines.append("devices")
    lines.append(f"  cpu               {torch.get_num_threads()} threads")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            lines.append(f"  cuda:{i:<12} {torch.cuda.get_device_name(i)}")
    else:
        lines.append("  cuda              not available")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        lines.append("  mps               available")
    lines.append("optional backends")
    for name in OPTIONAL_BACKENDS:
        found = util.find_spec(name) is not None
        lines.append(f"  {name:<17} {_version(name.replace('_', '-'), name) if found else 'not found'}")
    return lines


def _cmd_info(args) -> int:
    print("\n".join(info_lines()))
    return 0


def _cmd_train(args) -> int:
    from equigraph.train import fit

    if args.resume is None and args.config is None:
        raise ValueError("give a CONFIG.yaml, or --resume RUN_DIR")
    overrides = list(args.overrides)
    config = args.config
    if args.resume is not None and config is not None and "=" in config:
        overrides.insert(0, config)  # `train --resume RUN key=value`: the first override took the config slot
        config = None
    result = fit(config, overrides, resume=args.resume)
    for name, m in result.metrics.items():
        print(f"target {name}: test {m['metric'].upper()} {m['test_' + m['metric']]:.4g} {m['unit']}")
    print(f"mean predictor ({result.target}): {result.baseline_mae:.4g} {result.unit}")
    print(f"{result.epochs} epochs, {result.seconds_per_epoch:.3g} s/epoch, "
          f"{result.graphs_per_second:.4g} graphs/s on {result.num_train} training graphs")
    print(f"run folder: {result.out_dir}")
    if result.model_file:
        print(f"model: {result.model_file}")
    print(f"learning curve: {result.plot}")
    return 0


def _cmd_evaluate(args) -> int:
    from equigraph.train import evaluate

    res = evaluate(args.model, split=args.split, overrides=args.overrides)
    for name, t in res["targets"].items():
        metric = t["metric"]
        base = f" (mean predictor {t['baseline']:.4g} {t['unit']})" if t["baseline"] is not None else ""
        print(f"{res['split']} {metric.upper()} of {name} ({res['count']} graphs): {t[metric]:.4g} {t['unit']}{base}")
    return 0


def _cmd_predict(args) -> int:
    from pathlib import Path

    from equigraph.data import from_smiles, read_molecules
    from equigraph.models import load
    from equigraph.models.predict import predict

    path = Path(args.model)
    model = load(path / "model.pt" if path.is_dir() else path)
    if args.smiles:
        molecules = []
        for s in args.smiles:
            mol = from_smiles(s, seed=args.seed)
            mol.name = s
            molecules.append(mol)
    else:
        molecules = read_molecules(args.file, embed=args.embed, seed=args.seed)
    names = [getattr(m, "name", None) or f"molecule {i}" for i, m in enumerate(molecules)]
    targets = (model.metadata or {}).get("targets") or {}
    graph_targets = {n: t for n, t in targets.items() if t.get("level") == "graph"}
    if not graph_targets:
        raise ValueError("this model predicts no per-molecule quantity to print")
    out = predict(model, molecules, outputs=[t["output"] for t in graph_targets.values()])
    from equigraph.train.units import conversion_factor

    width = max(len(n) for n in names)
    for i, name in enumerate(names):
        parts = []
        for tname, t in graph_targets.items():
            unit = t.get("metric_unit") or t.get("unit", "")
            values = out[t["output"]][i].reshape(-1) * conversion_factor(t.get("unit"), t.get("metric_unit"))
            parts.append(f"{tname} = {', '.join(f'{v:.4g}' for v in values.tolist())} {unit}".rstrip())
        print(f"{name:<{width}}  " + "; ".join(parts))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="equigraph", description="Train, evaluate and apply equivariant graph neural networks on molecules.")
    from equigraph import __version__

    parser.add_argument("--version", action="version", version=f"equigraph {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train from a YAML config (dotted key=value overrides) into OUT_DIR/version_N")
    p.add_argument("config", nargs="?", help="YAML config, e.g. configs/qm9_egnn_demo.yaml")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="e.g. train.max_epochs=3 model.hidden_channels=32")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a run from RUN_DIR/checkpoints/last.ckpt (only train.* overrides)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="MAE of a trained model on a split of the data it was trained on")
    p.add_argument("model", help="a run folder or its model.pt")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="only where the data lives or how it is batched, e.g. data.root=/data/qm9")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("predict", help="predict for molecules (SMILES or any molecule file)")
    p.add_argument("model", help="a run folder or its model.pt")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--smiles", nargs="+", help="SMILES strings (3D conformers by RDKit)")
    src.add_argument("--file", help="a molecule file (SDF/MOL, xyz, pdb, cif, ... any ASE format), geometry as given")
    p.add_argument("--embed", action="store_true",
                   help="embed 2D or hydrogen-less SDF records in 3D with hydrogens instead of refusing them")
    p.add_argument("--seed", type=int, default=0, help="conformer embedding seed (default: 0)")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("info", help="versions, devices and optional backends")
    p.set_defaults(func=_cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``equigraph`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as err:
        print(f"equigraph {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"equigraph {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
