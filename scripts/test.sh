#!/usr/bin/env bash
# The test command: sets the environment up (idempotent, seconds when nothing changed), then runs
# the whole suite, lint included. Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
# shellcheck disable=SC1091
source "$root/env.sh"
cd "$root"
python -m pytest "$@"
