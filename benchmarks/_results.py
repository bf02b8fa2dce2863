"""Writes a benchmark's ``results/NAME.json`` (schema: command, machine, date, rows) and a
rendered ``results/NAME.md``. Every script in ``benchmarks/`` reports through this."""
from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    desc = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, threads {torch.get_num_threads()}"
    if torch.cuda.is_available():
        desc += f", GPU {torch.cuda.get_device_name()}"
    return desc


def row(model: str, setting: str, metric: str, value: float, unit: str, **extra) -> dict:
    """One result row; ``extra`` keys (e.g. ``published``) are kept in the JSON."""
    return {"model": model, "setting": setting, "metric": metric, "value": value, "unit": unit, **extra}


def write(name: str, rows: list[dict], notes: str = "", extra: dict | None = None) -> Path:
    """Write ``results/NAME.json`` and ``results/NAME.md``; ``notes`` is Markdown put under
    the table (plots, protocol, caveats). Returns the JSON path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {
        "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "rows": rows,
    }
    if extra:
        doc.update(extra)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(render(doc, name, notes))
    return path


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def render(doc: dict, name: str, notes: str = "") -> str:
    cols = ["model", "setting", "metric", "value", "unit"]
    extra_cols = sorted({k for r in doc["rows"] for k in r} - set(cols))
    cols += extra_cols
    lines = [
        f"# {name}",
        "",
        f"- command: `{doc['command']}`",
        f"- machine: {doc['machine']}",
        f"- date: {doc['date']}",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for r in doc["rows"]:
        lines.append("| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |")
    if notes:
        lines += ["", notes.strip()]
    return "\n".join(lines) + "\n"
