"""Training callbacks: stop on a non-finite loss, write the learning-curve plot."""
from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import TQDMProgressBar

from equigraph.train.padding import real_graphs
from equigraph.train.plotting import plot_learning_curve


class NonFiniteLossError(FloatingPointError):
    """Raised by :class:`NonFiniteLoss` when a training loss is NaN or inf."""


class NonFiniteLoss(pl.Callback):
    """Stops training on a batch whose loss is NaN or inf, naming the epoch and the batch, so
    that the data that produced it can be found.

    On the CPU the check runs before the batch's backward pass, which keeps the weights (and
    the EMA, and the last checkpoint) free of the non-finite update. On a GPU reading the
    flag then would wait for the batch's forward pass, a synchronisation per step that
    leaves the GPU idle while the host prepares the next step; there (``deferred``) the flag
    of a batch is read one batch later, when it is long computed, and at the end of each
    epoch: training still stops naming the batch, after at most one update from it.

    Args:
        deferred (bool, optional): read each flag one batch later; :obj:`None` does so on
            CUDA devices only. (default: :obj:`None`)

    >>> NonFiniteLoss()
    NonFiniteLoss()
    """

    def __init__(self, deferred: bool | None = None):
        super().__init__()
        self.deferred = deferred
        self._batch_idx = -1
        self._pending = None  # (flag, loss, epoch, batch, global step) of the previous batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._batch_idx = batch_idx

    def _check(self, trainer, finite, loss, epoch, batch_idx, step):
        if not bool(finite):
            trainer.should_stop = True
            raise NonFiniteLossError(
                f"training loss became {loss.item()} at epoch {epoch}, batch {batch_idx} (global step {step}); "
                "stopping. Check the inputs of that batch for NaN/inf, or lower the learning rate."
            )

    def on_before_backward(self, trainer, pl_module, loss):
        loss = loss.detach()
        record = (torch.isfinite(loss).all(), loss, trainer.current_epoch, self._batch_idx, trainer.global_step)
        deferred = loss.device.type == "cuda" if self.deferred is None else self.deferred
        if not deferred:
            self._check(trainer, *record)
            return
        previous, self._pending = self._pending, record
        if previous is not None:
            self._check(trainer, *previous)

    def on_train_epoch_end(self, trainer, pl_module):
        previous, self._pending = self._pending, None
        if previous is not None:
            self._check(trainer, *previous)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}()"


class LearningCurve(pl.Callback):
    """Redraws ``path`` (PNG) from the CSV logger's ``metrics.csv`` after a validation epoch
    when ``min_interval`` seconds have passed since the last drawing, and at the end of
    training (rank 0 only). A drawing takes about 0.3 s: after every epoch it would cost a
    tenth of a fast GPU epoch."""

    def __init__(self, path: str | Path, title: str | None = None, min_interval: float = 30.0):
        super().__init__()
        self.path = Path(path)
        self.title = title
        self.min_interval = float(min_interval)
        self._last = None

    def _draw(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking or trainer.logger is None:
            return
        trainer.logger.save()
        metrics = Path(trainer.logger.log_dir) / "metrics.csv"
        if metrics.is_file():
            unit = getattr(pl_module, "metric_unit", "")
            plot_learning_curve(metrics, self.path, title=self.title, unit=unit)

    def on_validation_epoch_end(self, trainer, pl_module):
        import time

        if trainer.sanity_checking:
            return
        now = time.monotonic()
        if self._last is None or now - self._last >= self.min_interval:
            self._last = now
            self._draw(trainer, pl_module)

    def on_train_end(self, trainer, pl_module):
        self._draw(trainer, pl_module)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(path={str(self.path)!r})"


class EpochTimer(pl.Callback):
    """Wall time and number of graphs of each training epoch (for time/epoch, molecules/s)."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []
        self.graphs: list[int] = []
        self._start = 0.0
        self._count = 0

    def on_train_epoch_start(self, trainer, pl_module):
        import time

        self._start = time.perf_counter()
        self._count = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._count += real_graphs(batch)  # padded batches (data.pad_buckets): the data graphs only

    def on_train_epoch_end(self, trainer, pl_module):
        import time

        self.seconds.append(time.perf_counter() - self._start)
        self.graphs.append(self._count)

    @property
    def seconds_per_epoch(self) -> float:
        """Median training-epoch time (the first epoch includes warm-up), ``nan`` if none."""
        if not self.seconds:
            return float("nan")
        return float(sorted(self.seconds)[len(self.seconds) // 2])

    @property
    def graphs_per_second(self) -> float:
        total = sum(self.seconds)
        return sum(self.graphs) / total if total > 0 else float("nan")


class EpochProgressBar(TQDMProgressBar):
    """Lightning's progress bar with epochs counted from 1 of ``max_epochs``, as in the
    learning-curve plot and ``result.json``."""

    def on_train_epoch_start(self, trainer, pl_module):
        super().on_train_epoch_start(trainer, pl_module)
        self.train_progress_bar.set_description(f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}")
