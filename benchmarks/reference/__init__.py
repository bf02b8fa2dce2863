"""Reference implementations used only by the benchmarks (speed and accuracy baselines);
nothing in ``equigraph`` imports them."""
