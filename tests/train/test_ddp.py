import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from train_helpers import egnn_config

HERE = Path(__file__).resolve().parent


@pytest.mark.slow
@pytest.mark.parametrize("loader", ["pyg", "device", "device+pad"])
def test_ddp_two_cpu_processes(tmp_path, loader):
    """``strategy="ddp"`` on 2 CPU processes (gloo) through ``equigraph train``, with PyG's
    loader (Lightning's distributed sampler) and the device loader (its own shards), also
    with batches padded to bucket sizes.

    Lightning re-launches the script for rank 1, so the run lives in a script of its own."""
    cfg = egnn_config(tmp_path, max_epochs=2, accelerator="cpu", devices=2, strategy="ddp", num_threads=1)
    cfg["data"]["loader"] = loader.split("+")[0]
    cfg["data"]["pad_buckets"] = 0.1 if loader.endswith("+pad") else None
    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(cfg))
    script = tmp_path / "run_ddp.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(HERE)!r})
        import train_helpers  # registers data.name: synthetic
        from equigraph.cli import main
        if __name__ == "__main__":
            sys.exit(main(["train", {str(tmp_path / "ddp.yaml")!r}]))
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted(Path(cfg["out_dir"]).iterdir())
    assert [r.name for r in runs] == ["version_0"]  # the worker of rank 1 writes into rank 0's folder
    result = json.loads((runs[0] / "result.json").read_text())
    assert result["world_size"] == 2
    assert result["epochs"] == 2 and result["test_mae"] == result["test_mae"]  # finite, not NaN
    assert "distributed_backend=gloo" in proc.stderr + proc.stdout
