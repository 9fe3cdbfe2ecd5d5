#!/usr/bin/env bash
# Create the peer venvs for bench/bench_serving.py under .state/bench-venvs/ (idempotent).
# Usage: bench/serving_peers/setup_venvs.sh [PYTHON] [VENV_ROOT]
set -euo pipefail
PYTHON="${1:-python3.11}"
ROOT="${2:-.state/bench-venvs}"
HERE="$(cd "$(dirname "$0")" && pwd)"
for peer in mlserver kserve; do
  venv="$ROOT/$peer"
  stamp="$venv/.installed"
  if [[ -f "$stamp" && "$stamp" -nt "$HERE/requirements-$peer.txt" ]]; then
    continue
  fi
  echo "setting up $venv"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet -r "$HERE/requirements-$peer.txt"
  touch "$stamp"
done
