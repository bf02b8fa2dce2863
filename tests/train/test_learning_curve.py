"""The learning-curve plot is redrawn at most every ``min_interval`` seconds, and at the end."""
from __future__ import annotations

from types import SimpleNamespace

from equigraph.train.callbacks import LearningCurve


def test_redraws_are_throttled_but_the_last_one_always_happens(tmp_path, monkeypatch):
    drawn = []
    curve = LearningCurve(tmp_path / "curve.png", min_interval=60.0)
    monkeypatch.setattr(curve, "_draw", lambda trainer, module: drawn.append(trainer.sanity_checking))
    clock = iter([0.0, 10.0, 59.0, 61.0, 62.0])
    monkeypatch.setattr("time.monotonic", lambda: next(clock))
    trainer = SimpleNamespace(sanity_checking=True)
    curve.on_validation_epoch_end(trainer, None)  # the sanity check draws nothing, takes no time slot
    trainer.sanity_checking = False
    for _ in range(5):
        curve.on_validation_epoch_end(trainer, None)
    assert len(drawn) == 2  # at 0 s and 61 s
    curve.on_train_end(trainer, None)
    assert len(drawn) == 3
