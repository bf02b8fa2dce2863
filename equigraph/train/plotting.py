"""Learning-curve plot from a Lightning ``CSVLogger`` ``metrics.csv``."""
from __future__ import annotations

import csv
import math
from pathlib import Path


def read_metrics(path: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Per-epoch series ``{metric: [(epoch, value), ...]}`` from a ``metrics.csv``.

    Step-level columns (``*_step``) are skipped; ``train_loss_epoch`` is renamed
    ``train_loss``. Empty cells are ignored.
    """
    series: dict[str, list[tuple[int, float]]] = {}
    with open(path, newline="") as f:
        for rec in csv.DictReader(f):
            epoch = rec.get("epoch")
            if not epoch:
                continue
            for key, value in rec.items():
                if key in ("epoch", "step") or key.endswith("_step") or not value:
                    continue
                name = key[: -len("_epoch")] if key.endswith("_epoch") else key
                series.setdefault(name, []).append((int(float(epoch)), float(value)))
    return series


def plot_learning_curve(
    metrics_csv: str | Path, out_png: str | Path, title: str | None = None, unit: str = ""
) -> Path:
    """Plot losses (left) and MAEs (right) per epoch; returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = read_metrics(metrics_csv)
    fig, (ax_loss, ax_mae) = plt.subplots(1, 2, figsize=(9, 3.5))
    for name, points in sorted(series.items()):
        ax = ax_loss if name.endswith("_loss") else ax_mae if name.endswith("_mae") else None
        finite = [(e, v) for e, v in points if math.isfinite(v)]
        if ax is None or not finite:
            continue
        epochs, values = zip(*finite)
        ax.plot([e + 1 for e in epochs], values, marker="o" if len(finite) < 30 else None, ms=3, label=name)
    for ax, label in ((ax_loss, "loss (standardised)"), (ax_mae, f"MAE ({unit})" if unit else "MAE")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_yscale("log")
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
