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
mkdir -p "$OUT"
started=$(date -u +%Y-%m-%dT%H:%MZ)
# STUDIES="batch-size" runs some of them; RUN.txt keeps one line per study run.
STUDIES=${STUDIES:-ioffe-fig1 precise-bn batch-size}
touch "$OUT/RUN.txt"
for study in $STUDIES; do
  begun=$(date -u +%Y-%m-%dT%H:%MZ)
  echo "studies: $study ${QUICK_FLAG[*]} ($begun)"
  $PY -m bnlab.cli run "$study" "${QUICK_FLAG[@]}" --store "$STORE" --out "$OUT/$study" --quiet
  line="$study: ${QUICK_FLAG[*]:-full settings}; started $begun, finished $(date -u +%Y-%m-%dT%H:%MZ);"
  line="$line $(nproc) cores, load average at the end $(cut -d' ' -f1-3 /proc/loadavg); store $STORE"
  grep -v "^$study: " "$OUT/RUN.txt" > "$OUT/RUN.txt.tmp" || true
  echo "$line" >> "$OUT/RUN.txt.tmp" && mv "$OUT/RUN.txt.tmp" "$OUT/RUN.txt"
  echo "studies: $line"
done
