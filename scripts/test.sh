#!/usr/bin/env bash
# Sets up this machine and runs the whole test suite, slow end-to-end tests included,
# on SQLite and on a throwaway PostgreSQL cluster. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"; ruff check ca certgate migrations tests bench
echo "== mypy"; mypy ca certgate
echo "== pytest"
exec python -m pytest "$@"
