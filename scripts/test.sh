#!/usr/bin/env bash
# The project's test command: builds Earshot twice (normal, with the CUDA backend where nvcc is
# installed; and CPU-only with ASan + UBSan) and runs every ctest suite in both builds. Golden
# cases are read from ../shared/golden unless EARSHOT_GOLDEN_DIR says otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
golden=${EARSHOT_GOLDEN_DIR:-$(pwd)/../shared/golden}

# Where CUDA's compiler is installed the normal build includes the CUDA backend, so CI compiles
# it and runs every test; the tests that need a GPU print "skipped: no GPU" when there is none.
# The sanitizer and fuzz builds are CPU-only (ASan and the CUDA runtime do not mix).
cuda=-DEARSHOT_CUDA=OFF
if [ -x /usr/local/cuda/bin/nvcc ]; then
  cuda=-DEARSHOT_CUDA=ON
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEARSHOT_GOLDEN_DIR="$golden" "$cuda"
# The browser test drives Debian's chromium with Playwright (PyPI, pinned; its own browser
# download is never used).
if [ ! -x build/web-venv/bin/python ]; then
  python3 -m venv build/web-venv
  build/web-venv/bin/pip install --quiet playwright==1.48.0
fi
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs"

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DEARSHOT_SANITIZE=ON -DEARSHOT_CUDA=OFF -DEARSHOT_GOLDEN_DIR="$golden"
cmake --build build-asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs"

# libFuzzer targets (tests/fuzz), built with clang, each run for EARSHOT_FUZZ_SECONDS (default
# 60) from its seed corpus; any crash, leak or sanitizer report fails.
# The converter's fuzzer needs atheris (PyPI), installed pinned into a venv in the build tree.
if [ ! -x build-fuzz/pyvenv/bin/python ]; then
  python3 -m venv build-fuzz/pyvenv
  build-fuzz/pyvenv/bin/pip install --quiet atheris==2.3.0 pyyaml==6.0.2
fi
CC=clang-14 cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEARSHOT_FUZZ=ON -DEARSHOT_CUDA=OFF \
  -DEARSHOT_FUZZ_SECONDS="${EARSHOT_FUZZ_SECONDS:-60}" -DEARSHOT_GOLDEN_DIR="$golden" \
  -DEARSHOT_FUZZ_PYTHON="$(pwd)/build-fuzz/pyvenv/bin/python"
cmake --build build-fuzz -j "$jobs" --target fuzz_protocol fuzz_audio_in fuzz_audio_file fuzz_model_header fuzz_lm
ctest --test-dir build-fuzz --output-on-failure -j "$jobs" -R '^fuzz_|^convert_golden_models$'
