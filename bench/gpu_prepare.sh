#!/usr/bin/env bash
# gpu_prepare.sh - run HERE, on a CPU machine with nvcc and cuDNN under /usr/local/cuda, before a
# run on a GPU machine. That machine has the CUDA 13 runtime, cuBLAS and cuDNN 9 in its system
# paths but none of the Debian libraries Earshot links, no cuDNN headers, and nothing can be
# installed there; so everything bench/gpu_check.sh needs is made here, into build-gpu/ (git
# ignores build-*/), and travels with the device tool's `carry: ["build-gpu"]`.
#
#   bench/gpu_prepare.sh [--jobs N]
#
# What travels (build-gpu/, measured at the end; the device tool carries at most 64 MiB, the
# repository's own files included):
#   bin/         earshot-golden, test_cuda_backend, earshot-bench, earshot-server, earshot-loadtest: built with
#                -DEARSHOT_CUDA=ON (Release) and stripped
#   bin/golden-converter   stands in for earshot-convert there: copies the model converted here
#   deps.tar.xz  the shared libraries the binaries load that are not glibc's, the compiler's or
#                CUDA's: fetched with `apt-get download` from Debian and unpacked with `dpkg -x`
#                (libwebsockets, libssl, libopus, libsndfile and its codecs, libsamplerate,
#                libopenblas, libgfortran, libquadmath, libgomp, libcjson, ...); packed with xz
#                because OpenBLAS alone is 36 MB. deps/fallback/ inside it holds libstdc++ and
#                libgcc_s, used only if the GPU machine's own are missing or too old.
#   deps.txt     what is in deps.tar.xz, with the package each library came from
#   golden/      the golden cases (../shared/golden, or $EARSHOT_GOLDEN_DIR) without model.nemo
#   golden_models/  their models converted here (the GPU machine needs no Python for them)
# The CMake build tree itself is build-gpu-tree/ (not carried).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
while [ $# -gt 0 ]; do
  case "$1" in
    --jobs) jobs=$2; shift 2 ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "gpu_prepare.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x /usr/local/cuda/bin/nvcc ] || { echo "gpu_prepare.sh: no nvcc in /usr/local/cuda/bin" >&2; exit 2; }
golden=${EARSHOT_GOLDEN_DIR:-$(pwd)/../shared/golden}
tree=build-gpu-tree
out=build-gpu

echo "== building with -DEARSHOT_CUDA=ON in $tree/"
cmake -S . -B "$tree" -DCMAKE_BUILD_TYPE=Release -DEARSHOT_CUDA=ON -DEARSHOT_GOLDEN_DIR="$golden" >/dev/null
cmake --build "$tree" -j "$jobs" --target earshot-golden earshot-bench earshot-server earshot-loadtest test_cuda_backend

rm -rf "$out"
mkdir -p "$out/bin" "$out/golden" "$out/golden_models"
for t in tests/earshot-golden tests/test_cuda_backend bench/earshot-bench server/earshot-server clients/loadtest/earshot-loadtest; do
  [ -x "$tree/$t" ] || { echo "gpu_prepare.sh: $tree/$t was not built" >&2; exit 1; }
  cp "$tree/$t" "$out/bin/"
  strip --strip-debug "$out/bin/$(basename "$t")"
done
# earshot-golden converts CASE/model.nemo with --converter; there the model converted here is copied
cat >"$out/bin/golden-converter" <<'EOF'
#!/bin/sh
# earshot-golden --converter on the GPU machine: the case's model, converted by gpu_prepare.sh;
# else the project's converter (needs Python with PyYAML there).
here=$(dirname "$0")
name=$(basename "$(dirname "$1")")
if [ -f "$here/../golden_models/$name.safetensors" ]; then
  exec cp "$here/../golden_models/$name.safetensors" "$2"
fi
exec "$here/../../models/convert/earshot-convert" "$1" "$2"
EOF
chmod +x "$out/bin/golden-converter"

echo "== golden cases from $golden"
if [ -d "$golden" ]; then
  for d in "$golden"/*/; do
    [ -f "$d/manifest.json" ] || continue
    name=$(basename "$d")
    mkdir -p "$out/golden/$name"
    find "$d" -maxdepth 1 -type f ! -name model.nemo -exec cp {} "$out/golden/$name/" \;
    models/convert/earshot-convert "$d/model.nemo" "$out/golden_models/$name.safetensors" >/dev/null
    echo "   $name"
  done
else
  echo "   (none: $golden is missing; gpu_check.sh will say so)"
fi

echo "== runtime libraries"
# Provided by the GPU machine: glibc, the CUDA libraries. libstdc++ and libgcc_s too, normally
# (newer than Debian 12's), so ours go into fallback/ and are used only if theirs fail.
base='^(linux-vdso|ld-linux|libc\.so|libm\.so|libpthread\.so|libdl\.so|librt\.so|libresolv\.so|libutil\.so)'
cudalibs='^(libcuda\.so|libcudart|libcublas|libcublasLt|libcudnn|libnvrtc|libnvJitLink|libnvidia)'
fallback='^(libstdc\+\+\.so|libgcc_s\.so)'
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
deps=$work/deps
mkdir -p "$deps/fallback" "$work/debs" "$work/x"
: >"$work/deps.txt"
missing=$(ldd "$out"/bin/earshot-* | awk '/not found/ {print $1}' | sort -u || true)
if [ -n "$missing" ]; then
  echo "gpu_prepare.sh: libraries not found here: $missing" >&2
  exit 1
fi
ldd "$out"/bin/earshot-* | awk '/=>/ {print $1, $3}' | sort -u | while read -r soname path; do
  if [[ $soname =~ $base || $soname =~ $cudalibs ]]; then
    continue
  fi
  dest=$deps
  [[ $soname =~ $fallback ]] && dest=$deps/fallback
  real=$(readlink -f "$path")
  # dpkg knows a file by the path its package installed it at (/lib or /usr/lib on merged /usr)
  pkg=
  for p in "$path" "$real" "${path#/usr}" "${real#/usr}" "/usr$path" "/usr$real"; do
    pkg=$(dpkg -S "$p" 2>/dev/null | head -1 | cut -d: -f1) && [ -n "$pkg" ] && break
  done
  how="apt-get download $pkg"
  got=
  if [ -n "$pkg" ]; then
    (cd "$work/debs" && apt-get download "$pkg" >/dev/null 2>&1) || true
    deb=$(ls "$work/debs/${pkg}_"*.deb 2>/dev/null | head -1 || true)
    if [ -n "$deb" ]; then
      rm -rf "$work/x" && mkdir -p "$work/x"
      dpkg -x "$deb" "$work/x"
      got=$(find "$work/x" -name "$(basename "$real")" \( -type f -o -type l \) | head -1)
    fi
  fi
  if [ -z "$got" ]; then
    # no package, or no network: the installed copy (the same bytes the package holds)
    got=$real
    how="copied from $real (package ${pkg:-unknown}; apt-get download failed)"
  fi
  cp -L "$got" "$dest/$soname"
  echo "$soname  $how" | tee -a "$work/deps.txt"
done
cp "$work/deps.txt" "$out/deps.txt"
tar -C "$work" -cf - deps | xz -6 -T "$jobs" >"$out/deps.tar.xz"

echo "== what travels (carry: [\"build-gpu\"]); the device tool's limit is 64 MiB with the repository"
du -sh "$out"/bin "$out"/deps.tar.xz "$out"/golden "$out"/golden_models
du -sh "$out"
echo "repository files that travel too: $(git ls-files -z | du -ch --files0-from=- | tail -1 | cut -f1)"
