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
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, FloatingPointError)

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

    result = fit(args.config, args.overrides)
    print(f"target {result.target}: test MAE {result.test_mae:.4g} {result.unit} "
          f"(mean predictor {result.baseline_mae:.4g} {result.unit}), best val MAE {result.val_mae:.4g}")
    print(f"{result.epochs} epochs, {result.seconds_per_epoch:.3g} s/epoch, "
          f"{result.graphs_per_second:.4g} molecules/s on {result.num_train} train molecules")
    print(f"checkpoint: {result.checkpoint}")
    print(f"learning curve: {result.plot}")
    return 0


def _load(ckpt: str, overrides: Sequence[str]):
    from equigraph.train import apply_overrides, load_checkpoint

    module = load_checkpoint(ckpt)
    if overrides:
        module.hparams.config = apply_overrides(module.hparams.config or {}, list(overrides))
    return module


def _cmd_evaluate(args) -> int:
    from equigraph.train import evaluate

    module = _load(args.checkpoint, args.overrides)
    res = evaluate(module, split=args.split)
    for mae, base in zip(res["mae"], res["baseline_mae"]):
        print(f"{res['split']} MAE ({res['target']}, {res['count']} molecules): {mae:.4g} {res['unit']} "
              f"(mean predictor {base:.4g} {res['unit']})")
    return 0


def _cmd_predict(args) -> int:
    from equigraph.data import from_smiles, read_sdf
    from equigraph.train import predict_molecules

    module = _load(args.checkpoint, ())
    if args.smiles:
        molecules, names = [], []
        for s in args.smiles:
            molecules.append(from_smiles(s, seed=args.seed))
            names.append(s)
    else:
        molecules = read_sdf(args.file)
        names = [getattr(m, "name", None) or f"{args.file}[{i}]" for i, m in enumerate(molecules)]
    pred = predict_molecules(module, molecules) * module.metric_factor
    width = max(len(n) for n in names)
    for name, values in zip(names, pred.tolist()):
        shown = ", ".join(f"{v:.4g}" for v in values)
        print(f"{name:<{width}}  {module.hparams.target} = {shown} {module.metric_unit}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="equigraph", description="Train, evaluate and apply equivariant graph neural networks on molecules.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train from a YAML config (dotted key=value overrides)")
    p.add_argument("config", help="YAML config, e.g. configs/qm9_egnn_demo.yaml")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="e.g. train.max_epochs=3 model.hidden_channels=32")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="MAE of a checkpoint on a split of its dataset")
    p.add_argument("checkpoint")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="overrides of the stored config, e.g. data.root=/data/qm9")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("predict", help="predict the target for molecules (SMILES or SDF)")
    p.add_argument("checkpoint")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--smiles", nargs="+", help="SMILES strings (3D conformers by RDKit)")
    src.add_argument("--file", help="an SDF file with 3D coordinates")
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
