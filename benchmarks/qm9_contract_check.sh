#!/usr/bin/env bash
# QM9 short check that EGNN's numbers did not change with the model contract: the same
# demo-sized run (5,000 training molecules, 3 epochs, seed 0, 1 thread) on the code before
# the contract (95b19f1, a git worktree) and on this tree, with and without the new cutoff
# envelope. Prints the validation MAE per epoch of each; logs: benchmarks/logs/qm9_contract_check.log
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OLD=${OLD:-/tmp/equigraph_95b19f1}
OUT=${OUT:-/tmp/qm9_contract_check}
[ -d "$OLD" ] || git worktree add -f "$OLD" 95b19f1 >/dev/null
COMMON="data.max_train=5000 data.max_val=1000 data.max_test=1000 train.max_epochs=3 train.num_threads=1 train.progress_bar=false"
val_per_epoch() {
  "$PY" - "$1" <<'PYCODE'
import csv, sys
for row in csv.DictReader(open(sys.argv[1])):
    if row.get("val_mae") and row.get("train_loss_epoch", "") == "" and row.get("test_mae", "") == "":
        print(f"  epoch {row['epoch']}: val MAE {float(row['val_mae']):.2f} meV")
PYCODE
}
echo "== before the contract (95b19f1)"
(cd "$OLD" && PYTHONPATH="$OLD" "$OLDPWD/$PY" -m equigraph train configs/qm9_egnn_demo.yaml $COMMON out_dir="$OUT/old" 2>&1 | grep -E "^target|epochs,")
val_per_epoch "$OUT/old/metrics.csv"
for env in false true; do
  echo "== model contract, envelope=$env"
  "$PY" -m equigraph train "$OLD/configs/qm9_egnn_demo.yaml" $COMMON model.envelope=$env out_dir="$OUT/new_envelope_$env" 2>&1 | grep -E "^target|epochs,"
  val_per_epoch "$(ls -d "$OUT/new_envelope_$env"/version_* | tail -1)/logs/metrics.csv"
done
