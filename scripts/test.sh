#!/usr/bin/env bash
# The project's test command: builds libbitnet and its CLI, runs the C tests
# (ctest) and the Python tests (pytest) against the installed bitnet_py.
# Install first with:  pip install -e ".[test]"
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=${BUILD_DIR:-build}
jobs=$(nproc 2>/dev/null || echo 2)

cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DBN_WERROR=ON
cmake --build "$build_dir" -j "$jobs"
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs"

case "$build_dir" in
    /*) export BITNET_CLI="$build_dir/bitnet" ;;
    *) export BITNET_CLI="$PWD/$build_dir/bitnet" ;;
esac
set +e
python -m pytest tests/python -q -ra "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: treating as a failure" >&2
    exit 1
fi
exit "$rc"
