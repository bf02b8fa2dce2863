"""Model registry: names to constructors, errors that name the problem."""
import pytest
import torch

from equigraph.models import EGNN, available_models, build_model, register_model
from equigraph.models import registry


@pytest.fixture
def scratch_registry(monkeypatch):
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))


def test_egnn_is_registered():
    assert "egnn" in available_models()
    model = build_model("EGNN", hidden_channels=8, num_layers=1, out_channels=1)
    assert isinstance(model, EGNN) and model.hidden_channels == 8


def test_register_and_build(scratch_registry):
    @register_model("tiny")
    class Tiny(torch.nn.Module):
        def __init__(self, width=2):
            super().__init__()
            self.lin = torch.nn.Linear(width, 1)

    assert "tiny" in available_models() and available_models() == sorted(available_models())
    assert build_model("tiny", width=3).lin.in_features == 3
    assert register_model("tiny")(Tiny) is Tiny  # registering the same constructor again is fine
    with pytest.raises(ValueError, match="already registered"):
        register_model("Tiny")(EGNN)
    with pytest.raises(ValueError, match="unexpected keyword argument"):
        build_model("tiny", depth=3)


def test_unknown_name_lists_models():
    with pytest.raises(ValueError, match=r"unknown model 'nope'; available: .*egnn"):
        build_model("nope")


@pytest.mark.parametrize("name", ["", None, 3])
def test_bad_names(name):
    with pytest.raises(ValueError, match="non-empty string"):
        register_model(name)
