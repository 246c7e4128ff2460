#!/usr/bin/env bash
# `make studies`: every study at its committed settings (its own seeds), one after the other, into
# docs/studies/<study>/ (report.md opening with the verdict on each paper claim, report.html,
# trials.csv, figures). QUICK=1 runs their --quick forms instead; the reports say which.
# STUDIES="batch-size" runs some of them. WORKERS processes (default: one a core) train each
# study from one store, each claiming a unit of seeds at a time, since one study's program keeps
# about one core busy; the last to start waits for the others' trials and writes the report.
# Several copies of this script may run at once (one study each): docs/studies/RUN.txt keeps one
# line per study run, written under a lock, with the machine's load average when the study
# started and when it ended.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
STORE=${STORE:-runs/studies.sqlite}
OUT=docs/studies
QUICK_FLAG=()
[ -n "${QUICK:-}" ] && QUICK_FLAG=(--quick)
# SEEDS=5 runs every study with 5 seeds (default: each study's own, 3 unless its quick form says)
[ -n "${SEEDS:-}" ] && QUICK_FLAG+=(--seeds "$SEEDS")
mkdir -p "$OUT" "$(dirname "$STORE")"
# Default: every study bnlab knows, in `bnlab list`'s order.
STUDIES=${STUDIES:-$($PY -c 'from bnlab.lab import experiments
print(" ".join(e.name for e in experiments.STUDIES))')}
WORKERS=${WORKERS:-$(nproc)}
touch "$OUT/RUN.txt"
load() { cut -d' ' -f1-3 /proc/loadavg; }
for study in $STUDIES; do
  begun=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  load_begun=$(load)
  t0=$(date +%s)
  echo "studies: $study ${QUICK_FLAG[*]} ($begun)"
  cpu0=$(awk '{print $14 + $15 + $16 + $17}' /proc/$$/stat)
  helpers=()
  for _ in $(seq 2 "$WORKERS"); do
    $PY -m bnlab.cli run "$study" "${QUICK_FLAG[@]}" --store "$STORE" --no-report --quiet &
    helpers+=($!)
  done
  $PY -m bnlab.cli run "$study" "${QUICK_FLAG[@]}" --store "$STORE" --out "$OUT/$study" --quiet
  for pid in "${helpers[@]}"; do wait "$pid"; done
  cpu=$(( ($(awk '{print $14 + $15 + $16 + $17}' /proc/$$/stat) - cpu0) / $(getconf CLK_TCK) ))
  line="$study: ${QUICK_FLAG[*]:-full settings}; started $begun (load average $load_begun),"
  line="$line finished $(date -u +%Y-%m-%dT%H:%M:%SZ) (load average $(load));"
  line="$line $(( $(date +%s) - t0 )) s wall, $cpu s CPU (all cores); $WORKERS worker(s), $(nproc) cores,"
  line="$line shared with other work unless the load says otherwise; store $STORE"
  (
    flock 9
    grep -v "^$study: " "$OUT/RUN.txt" > "$OUT/RUN.txt.tmp" || true
    echo "$line" >> "$OUT/RUN.txt.tmp" && mv "$OUT/RUN.txt.tmp" "$OUT/RUN.txt"
  ) 9>"${TMPDIR:-/tmp}/bnlab-studies-run.lock"
  echo "studies: $line"
done
