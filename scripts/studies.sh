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
for study in ioffe-fig1 precise-bn batch-size; do
  echo "studies: $study ${QUICK_FLAG[*]} ($(date -u +%H:%M))"
  $PY -m bnlab.cli run "$study" "${QUICK_FLAG[@]}" --store "$STORE" --out "$OUT/$study" --quiet
done
echo "studies: ${QUICK_FLAG[*]:-full settings}; started $started, finished $(date -u +%Y-%m-%dT%H:%MZ);" \
  "$(nproc) cores; store $STORE" | tee "$OUT/RUN.txt"
