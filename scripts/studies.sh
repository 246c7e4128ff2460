#!/usr/bin/env bash
# `make studies`: the three studies at their committed settings (their own seeds, 8 each), into
# docs/studies/<study>/ (report.md opening with the verdict on each paper claim, report.html,
# trials.csv, figures). QUICK=1 runs their --quick forms instead; the reports say which.
# STUDIES="batch-size" runs some of them; several copies of this script may run at once (one
# study each): docs/studies/RUN.txt keeps one line per study run, written under a lock, with the
# machine's load average when the study started and when it ended.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
STORE=${STORE:-runs/studies.sqlite}
OUT=docs/studies
QUICK_FLAG=()
[ -n "${QUICK:-}" ] && QUICK_FLAG=(--quick)
mkdir -p "$OUT" "$(dirname "$STORE")"
STUDIES=${STUDIES:-ioffe-fig1 precise-bn batch-size}
touch "$OUT/RUN.txt"
load() { cut -d' ' -f1-3 /proc/loadavg; }
for study in $STUDIES; do
  begun=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  load_begun=$(load)
  echo "studies: $study ${QUICK_FLAG[*]} ($begun)"
  $PY -m bnlab.cli run "$study" "${QUICK_FLAG[@]}" --store "$STORE" --out "$OUT/$study" --quiet
  line="$study: ${QUICK_FLAG[*]:-full settings}; started $begun (load average $load_begun),"
  line="$line finished $(date -u +%Y-%m-%dT%H:%M:%SZ) (load average $(load)); $(nproc) cores,"
  line="$line shared with other work unless the load says otherwise; store $STORE"
  (
    flock 9
    grep -v "^$study: " "$OUT/RUN.txt" > "$OUT/RUN.txt.tmp" || true
    echo "$line" >> "$OUT/RUN.txt.tmp" && mv "$OUT/RUN.txt.tmp" "$OUT/RUN.txt"
  ) 9>"${TMPDIR:-/tmp}/bnlab-studies-run.lock"
  echo "studies: $line"
done
