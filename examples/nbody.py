"""N-body dynamics with EGNN or SEGNN, trained through ``equigraph.train.fit`` on the
shipped configs (``configs/nbody_egnn.yaml``, ``configs/nbody_segnn.yaml``): predict where
five charged particles are 1,000 integration steps later from their positions, velocities
and charges, then check that the trained model is E(3)-equivariant.

    python examples/nbody.py                      # EGNN, 100 epochs of the published protocol
    python examples/nbody.py --model segnn        # SEGNN instead
    python examples/nbody.py --epochs 10000       # the paper's budget (hours on a CPU)
    python examples/nbody.py --quick              # small simulated splits, 2 epochs (seconds)

The full run uses the registry's ``nbody`` data: 3,000 / 2,000 / 2,000 simulated
trajectories (``equigraph.datasets.NBody``; the first run simulates and caches them, about
five minutes on one core). ``--quick`` simulates 64 / 16 / 16 small trajectories into a
temporary folder and hands them to ``fit`` as ready :class:`DataSplits`, the way to train
on data of your own.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch_geometric.data import Batch

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {"egnn": ROOT / "configs" / "nbody_egnn.yaml", "segnn": ROOT / "configs" / "nbody_segnn.yaml"}
PAPER_ROWS = {"egnn": "EGNN", "segnn": "SEGNN"}


def register_segnn() -> None:
    """Make ``model.name: segnn`` available (a no-op once ``equigraph.models`` imports it)."""
    import equigraph.models.segnn  # noqa: F401


def small_splits(root: Path, squared_distance: bool):
    """64 / 16 / 16 simulated trajectories (frames 30 -> 40, one frame every 10 steps),
    with the targets of the registry's ``nbody`` builder."""
    from equigraph.data import keys as K
    from equigraph.datasets import DataSplits, NBody, TargetInfo

    def prepare(d):
        if squared_distance:  # the reference code's second edge feature, |x_i - x_j|^2
            j, i = d[K.EDGE_INDEX]
            d[K.EDGE_ATTR] = torch.cat([d[K.EDGE_ATTR], (d[K.POS][j] - d[K.POS][i]).square().sum(-1, keepdim=True)], -1)
        return d

    parts = {s: [prepare(d) for d in NBody(root, s, sizes=(64, 16, 16), steps_per_frame=10)]
             for s in ("train", "valid", "test")}
    return DataSplits(train=parts["train"], val=parts["valid"], test=parts["test"],
                      targets={"pos": TargetInfo(K.TARGET_POS, "node", "", output=K.POS)})


def published_mse(model: str):
    """The paper's test MSE, as recorded by benchmarks/nbody.py (None when not there)."""
    path = ROOT / "benchmarks" / "results" / "nbody.json"
    if not path.exists():
        return None
    for row in json.loads(path.read_text())["rows"]:
        if row["model"] == PAPER_ROWS[model] and row.get("published") not in (None, ""):
            return row["published"]
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(CONFIGS), default="egnn")
    parser.add_argument("--epochs", type=int, default=None, help="default: 100 (2 with --quick)")
    parser.add_argument("--quick", action="store_true", help="small simulated splits, 2 epochs (seconds)")
    parser.add_argument("--out", default=None, help="run folder (default: runs/examples/nbody_MODEL)")
    args = parser.parse_args(argv)
    register_segnn()

    from equigraph.models import load
    from equigraph.testing import assert_equivariant
    from equigraph.train import fit
    from equigraph.train.config import load_config

    start = time.perf_counter()
    epochs = args.epochs or (2 if args.quick else 100)
    out = args.out or str(ROOT / "runs" / "examples" / f"nbody_{args.model}")
    overrides = [f"out_dir={out}", f"train.max_epochs={epochs}", "train.check_val_every_n_epoch=1",
                 "train.accelerator=cpu", "train.progress_bar=false"]
    with tempfile.TemporaryDirectory() as tmp:
        splits = None
        if args.quick:
            squared = load_config(CONFIGS[args.model])["data"].get("squared_distance", False)
            splits = small_splits(Path(tmp), squared)
            # Compiling would take longer than the two quick epochs it speeds up.
            overrides += ["data.batch_size=16", "data.eval_batch_size=16", "train.log_every_n_steps=1",
                          "train.compile=false"]
        result = fit(CONFIGS[args.model], overrides, splits=splits)

        test = splits.test if splits is not None else registry_test_split(load_config(CONFIGS[args.model])["data"])
        static = torch.cat([(d.pos - d.target_pos).square() for d in test]).mean()
        print(f"\n{args.model.upper()} on N-body: {result.num_train} training systems, {result.epochs} epochs, "
              f"{result.num_parameters} parameters, {result.seconds_per_epoch:.2f} s/epoch")
        print(f"  test MSE of the positions        : {result.test_mae:.5f}")
        print(f"  particles left where they were   : {float(static):.5f}")
        paper = published_mse(args.model)
        if paper is not None and not args.quick:
            print(f"  paper (3,000 systems, full budget): {paper}")

        # The saved model alone (weights + output statistics, no Lightning) predicts, and
        # stays equivariant after training: rotate, reflect, translate or permute the input
        # particles and the predicted positions follow.
        model = load(result.model_file).double().eval()
        batch = Batch.from_data_list(list(test[:4]))
        for key in ("pos", "vel", "edge_attr", "x", "charges"):
            if batch.get(key) is not None and batch[key].is_floating_point():
                batch[key] = batch[key].double()
        with torch.no_grad():
            errors = assert_equivariant(model, batch, in_types={"pos": "point", "vel": "vector"})
        worst = max(max(e.values()) for e in errors.values())
        print(f"  trained model passes assert_equivariant (E3 + permutations), largest error {worst:.1e}")
    print(f"run folder: {result.out_dir}; {time.perf_counter() - start:.0f} s in all")
    return 0


def registry_test_split(data_cfg: dict):
    """The test split the full run trained with (the config's dataset options)."""
    from equigraph.datasets import build_splits
    from equigraph.train.run import dataset_options

    return build_splits(dataset_options(data_cfg)).test


if __name__ == "__main__":
    sys.exit(main())
