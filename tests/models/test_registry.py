"""Registries: names to constructors, one helper for models, datasets, featurisers, losses
and interaction graphs; errors that name the problem."""
import pytest
import torch

from equigraph.models import EGNN, MODELS, available_models, build_model, register_model
from equigraph.registry import Registry, spec_of


@pytest.fixture
def scratch_registry(monkeypatch):
    monkeypatch.setattr(MODELS, "_entries", dict(MODELS._entries))


def test_egnn_is_registered():
    assert "egnn" in available_models()
    model = build_model("EGNN", hidden_channels=8, num_layers=1, out_channels=1)
    assert isinstance(model, EGNN) and model.hidden_channels == 8
    assert spec_of(model) == {"name": "egnn", "hidden_channels": 8, "num_layers": 1, "out_channels": 1}


def test_register_and_build(scratch_registry):
    @register_model("tiny")
    class Tiny(torch.nn.Module):
        def __init__(self, width: int = 2):
            super().__init__()
            self.lin = torch.nn.Linear(width, 1)

    assert "tiny" in available_models() and available_models() == sorted(available_models())
    assert build_model("tiny", width=3).lin.in_features == 3
    assert register_model("tiny")(Tiny) is Tiny  # registering the same constructor again is fine
    with pytest.raises(ValueError, match="already registered"):
        register_model("Tiny")(EGNN)
    with pytest.raises(ValueError, match=r"model 'tiny': unknown argument 'depth'; expected one of \['width'\]"):
        build_model("tiny", depth=3)
    with pytest.raises(ValueError, match=r"model 'tiny': width must be int, got '3' \(str\)"):
        build_model({"name": "tiny", "width": "3"})


def test_nested_specs_are_built_and_recorded():
    spec = {"name": "force_field", "model": {"name": "egnn", "hidden_channels": 8, "num_layers": 1, "out_channels": 1},
            "stress": True}
    model = build_model(spec)
    assert isinstance(model.model, EGNN) and model.compute_stress
    assert spec_of(model) == spec and spec_of(model.model) == spec["model"]
    with pytest.raises(ValueError, match="model 'egnn': hidden_channels must be int"):
        build_model({"name": "force_field", "model": {"name": "egnn", "hidden_channels": "8"}})


@pytest.mark.parametrize("kwargs, match", [
    ({"hidden_channels": 0}, "hidden_channels must be a positive int"),
    ({"hidden_channels": True}, "hidden_channels must be int"),
    ({"out_channels": 2.5}, "out_channels must be int or null"),
    ({"attention": "yes"}, "attention must be bool"),
])
def test_config_values_of_the_wrong_type_name_the_key(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_model({"name": "egnn", **kwargs})


def test_unknown_name_lists_models():
    with pytest.raises(ValueError, match=r"unknown model 'nope'; known: .*egnn"):
        build_model("nope")
    with pytest.raises(ValueError, match="model spec needs a 'name'"):
        build_model({"hidden_channels": 3})


@pytest.mark.parametrize("name", ["", None, 3])
def test_bad_names(name):
    with pytest.raises(ValueError, match="non-empty string"):
        register_model(name)


def test_registry_helper_is_shared():
    from equigraph.graph.interaction import INTERACTION_GRAPHS

    assert {"radius", "full", "knn"} <= set(INTERACTION_GRAPHS.names())
    reg = Registry("widget")
    reg.register("a", dict)
    assert reg.build({"name": "a"}) == {} and "A" in reg
    with pytest.raises(ValueError, match="unknown widget 'b'; known: a"):
        reg.get("b")
