#!/usr/bin/env bash
# The product's main job in one command, on a fresh machine: set up (idempotent), then run the
# segmentation node on the synthetic world (or --input BAG_OR_VIDEO), record its outputs and
# print what it measured. Arguments go to segmentation-ros-demo (see --help), e.g.
#
#   bash scripts/demo.sh --checkpoint runs/pan/last.pt --frames 150 --out demo_out/run1
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
# shellcheck disable=SC1091
source env.sh
exec segmentation-ros-demo "$@"
