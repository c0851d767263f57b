#!/usr/bin/env bash
# Sets up this machine and runs the certgate demo: a throwaway installation in ./demo-home
# with a real QEMU guest (or a simulated console) behind the gateway on 127.0.0.1:2222.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m certgate demo "$@"
