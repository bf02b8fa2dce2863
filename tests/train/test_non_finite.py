"""NonFiniteLoss: immediate on the CPU, one batch later where a read would synchronise a GPU."""
from types import SimpleNamespace

import pytest
import torch

from equigraph.train import NonFiniteLoss, NonFiniteLossError


def _run(callback, losses, trainer):
    for i, value in enumerate(losses):
        callback.on_train_batch_start(trainer, None, None, i)
        trainer.global_step = i
        callback.on_before_backward(trainer, None, torch.tensor(value))


def test_immediate_check_stops_before_the_backward_of_the_bad_batch():
    trainer = SimpleNamespace(current_epoch=2, global_step=0, should_stop=False)
    with pytest.raises(NonFiniteLossError, match=r"became nan at epoch 2, batch 1 \(global step 1\)"):
        _run(NonFiniteLoss(), [1.0, float("nan"), 1.0], trainer)
    assert trainer.should_stop


def test_deferred_check_names_the_bad_batch_one_batch_later():
    trainer = SimpleNamespace(current_epoch=0, global_step=0, should_stop=False)
    callback = NonFiniteLoss(deferred=True)
    _run(callback, [1.0, float("inf")], trainer)  # batch 1's flag is not read yet
    assert not trainer.should_stop
    with pytest.raises(NonFiniteLossError, match=r"became inf at epoch 0, batch 1 \(global step 1\)"):
        callback.on_before_backward(trainer, None, torch.tensor(1.0))


def test_deferred_check_reads_the_last_flag_at_the_end_of_the_epoch():
    trainer = SimpleNamespace(current_epoch=0, global_step=0, should_stop=False)
    callback = NonFiniteLoss(deferred=True)
    _run(callback, [1.0, 2.0, float("nan")], trainer)
    with pytest.raises(NonFiniteLossError, match="batch 2"):
        callback.on_train_epoch_end(trainer, None)
    callback.on_train_epoch_end(trainer, None)  # flushed: nothing pending


def test_deferred_by_default_only_on_cuda():
    trainer = SimpleNamespace(current_epoch=0, global_step=0, should_stop=False)
    with pytest.raises(NonFiniteLossError):
        _run(NonFiniteLoss(), [float("nan")], trainer)  # CPU tensor: immediate
