#!/usr/bin/env bash
# `make reproduce`: every experiment at the seeds' full settings, 5 seeds each, into
# docs/reproduction/<experiment>/ (report.md, report.html, figures). MNIST experiments run on
# MNIST when its files can be found, on Fashion-MNIST otherwise (the report says which).
set -euo pipefail
cd "$(dirname "$0")/.."
BNLAB=.venv/bin/bnlab
PY=.venv/bin/python
STORE=${STORE:-runs/reproduce.sqlite}
SEEDS=${SEEDS:-5}
OUT=docs/reproduction
mkdir -p "$OUT"
if $PY -c "import bnlab.data as d; d.load('mnist', download=True)" >/dev/null 2>&1; then
  MNIST=mnist
else
  MNIST=fashion_mnist
  echo "reproduce: MNIST cannot be had here; lenet-bn and deep-cnn run on Fashion-MNIST"
fi
started=$(date -u +%Y-%m-%dT%H:%MZ)
for exp in bn-placement deep-mlp lenet-bn deep-cnn; do
  case $exp in lenet-bn|deep-cnn) dataset=(--dataset "$MNIST");; *) dataset=();; esac
  echo "reproduce: $exp (${SEEDS} seeds)"
  $BNLAB run "$exp" --seeds "$SEEDS" "${dataset[@]}" --store "$STORE" --no-report --quiet
  $BNLAB report "$exp" --store "$STORE" --out "$OUT/$exp"
done
echo "reproduce: started $started, finished $(date -u +%Y-%m-%dT%H:%MZ); store $STORE" | tee "$OUT/RUN.txt"
