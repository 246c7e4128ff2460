#!/usr/bin/env bash
# `make studies`: the three studies of issue 10 at their committed settings (3 seeds each), into
# docs/studies/<study>/ (report.md, report.html, figures). About 40 minutes on two cores.
# QUICK=1 runs their --quick forms instead (a few minutes); the reports say which.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
STORE=${STORE:-runs/studies.sqlite}
OUT=docs/studies
QUICK_FLAG=()
[ -n "${QUICK:-}" ] && QUICK_FLAG=(--quick)
# SEEDS=5 runs every study with 5 seeds (default: each study's own, 3 unless its quick form says)
[ -n "${SEEDS:-}" ] && QUICK_FLAG+=(--seeds "$SEEDS")
mkdir -p "$OUT"
started=$(date -u +%Y-%m-%dT%H:%MZ)
# STUDIES="batch-size" runs some of them; RUN.txt keeps one line per study run.
STUDIES=${STUDIES:-ioffe-fig1 precise-bn batch-size}
touch "$OUT/RUN.txt"
for study in $STUDIES; do
  begun=$(date -u +%Y-%m-%dT%H:%MZ)
  t0=$(date +%s)
  echo "studies: $study ${QUICK_FLAG[*]} ($begun)"
  cpu0=$(awk '{print $14 + $15 + $16 + $17}' /proc/$$/stat)
  $PY -m bnlab.cli run "$study" "${QUICK_FLAG[@]}" --store "$STORE" --out "$OUT/$study" --quiet
  cpu=$(( ($(awk '{print $14 + $15 + $16 + $17}' /proc/$$/stat) - cpu0) / $(getconf CLK_TCK) ))
  line="$study: ${QUICK_FLAG[*]:-full settings}; started $begun, finished $(date -u +%Y-%m-%dT%H:%MZ);"
  line="$line $(( $(date +%s) - t0 )) s wall, $cpu s CPU (all cores);"
  line="$line $(nproc) cores, load average at the end $(cut -d' ' -f1-3 /proc/loadavg); store $STORE"
  grep -v "^$study: " "$OUT/RUN.txt" > "$OUT/RUN.txt.tmp" || true
  echo "$line" >> "$OUT/RUN.txt.tmp" && mv "$OUT/RUN.txt.tmp" "$OUT/RUN.txt"
  echo "studies: $line"
done
