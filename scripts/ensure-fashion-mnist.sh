#!/usr/bin/env bash
# Installs Debian's dataset-fashion-mnist when its files are absent and apt-get can be used (root).
# Never fails the build: without the files, bnlab.data tries its other sources and, failing those,
# says exactly what to install or where to put which files.
set -u
dir=/usr/share/datasets/fashion-mnist
[ -f "$dir/train-images-idx3-ubyte.gz" ] && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "bnlab: installing Debian's dataset-fashion-mnist into $dir"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
    || echo "bnlab: could not install dataset-fashion-mnist with apt-get; bnlab will look elsewhere or download"
else
  echo "bnlab: $dir is absent and apt-get cannot be used here; bnlab will look elsewhere or download"
fi
exit 0
