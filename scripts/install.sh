#!/usr/bin/env bash
# Install bnlab and the given extras into the venv: scripts/install.sh PYTHON EXTRAS
#
# Through uv when it can be had: the same packages as pip would pick (the newest that fit, across
# every index pip is configured with), resolved and unpacked in parallel; on a 2-core host it
# installs the test extras in about 1 minute against 3 with pip (bench/tried.md). uv reads no
# pip.conf, so pip's own settings (its indexes, local wheels, constraints and CA bundle) are
# handed over; anything else uv cannot do, pip does.
set -uo pipefail
PY=$1
EXTRAS=${2:-}
TARGET=".${EXTRAS:+[$EXTRAS]}"
PIP=("$PY" -m pip --disable-pip-version-check -q)
quiet() { grep -v "^WARNING: Location" || true; }  # pip's note on each empty local index

with_pip() { "${PIP[@]}" install -e "$TARGET" 2>&1 | quiet; }  # pipefail: pip's own status

pip_setting() {  # the value pip uses for one setting (environment first, as pip reads them)
  "$PY" -m pip config list 2>/dev/null | sed -n "s/^\(:env:\|global\|install\)\.$1='\(.*\)'$/\2/p" |
    head -1
}

if ! "${PIP[@]}" install "uv>=0.5" 2>&1 | quiet || [ ! -x "$(dirname "$PY")/uv" ]; then
  echo "install: uv could not be installed; installing with pip" >&2
  with_pip
  exit $?
fi

args=(pip install --python "$PY" --compile-bytecode --index-strategy unsafe-best-match)
index=$(pip_setting index-url)
[ -n "$index" ] && args+=(--index-url "$index")
for url in $(pip_setting extra-index-url); do args+=(--extra-index-url "$url"); done
for dir in $(pip_setting find-links); do args+=(--find-links "$dir"); done
for file in $(pip_setting constraint); do args+=(--constraint "$file"); done
cert=$(pip_setting cert)
[ -n "$cert" ] && export SSL_CERT_FILE=$cert
# pip compiles each module as it installs (the Makefile says why); uv does so with --compile-bytecode
if UV_HTTP_TIMEOUT=180 "$(dirname "$PY")/uv" "${args[@]}" -q -e "$TARGET" 2>&1 | quiet; then
  exit 0
fi
echo "install: uv failed (above); installing with pip" >&2
with_pip
