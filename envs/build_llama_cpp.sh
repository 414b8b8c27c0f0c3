#!/usr/bin/env bash
# llama.cpp for the audit, built once per machine (no wheel of llama-cpp-python exists):
#   bin/llama-quantize, bin/llama-imatrix   the tools people make GGUF presets with
#   lib/libllama.so, lib/libggml*.so        what llama-cpp-python's ctypes bindings load
# from the llama.cpp source vendored in the llama-cpp-python sdist, so that the tools and the
# bindings are the same llama.cpp. The build is cached under $FEATUREAUDIT_CACHE (default
# ~/.cache/featureaudit), keyed by version and CPU flags (-march=native), and reused by every
# clone on the machine; the Python bindings are then installed into the venv without compiling
# (LLAMA_BUILD=OFF) and pointed at the cached libraries (featureaudit/compress/llama_cpp.py).
#
#   envs/build_llama_cpp.sh build        download and compile into the cache (no venv needed)
#   envs/build_llama_cpp.sh bind VENV    the above if not cached, then the bindings into VENV
set -euo pipefail
MODE=${1:?usage: build_llama_cpp.sh build | bind VENV}
VERSION=0.3.36
PY=python3
CACHE=${FEATUREAUDIT_CACHE:-$HOME/.cache/featureaudit}
CPU=$(grep -m1 '^flags' /proc/cpuinfo | sha256sum | cut -c1-12)
DEST="$CACHE/llama.cpp/$VERSION-$CPU"
SDIST="$CACHE/llama.cpp/llama_cpp_python-$VERSION.tar.gz"

mkdir -p "$CACHE/llama.cpp"
if [ ! -f "$SDIST" ]; then
  echo "llama.cpp: downloading the llama-cpp-python $VERSION sdist from PyPI (76 MB)"
  "$PY" - "$VERSION" "$SDIST" <<'PYEOF'
import hashlib, json, os, sys, urllib.request
version, dest = sys.argv[1], sys.argv[2]
# PyPI's simple index (PEP 691 JSON): what pip itself reads
index = urllib.request.Request("https://pypi.org/simple/llama-cpp-python/",
                               headers={"Accept": "application/vnd.pypi.simple.v1+json"})
files = json.load(urllib.request.urlopen(index, timeout=60))["files"]
sdist = next(f for f in files if f["filename"] == f"llama_cpp_python-{version}.tar.gz")
data = urllib.request.urlopen(sdist["url"], timeout=600).read()
if hashlib.sha256(data).hexdigest() != sdist["hashes"]["sha256"]:
    sys.exit("llama.cpp: the downloaded sdist's sha256 differs from PyPI's; run again")
with open(dest + ".part", "wb") as f:
    f.write(data)
os.replace(dest + ".part", dest)
PYEOF
fi

if [ ! -x "$DEST/bin/llama-quantize" ]; then
  echo "llama.cpp: building llama-quantize, llama-imatrix and libllama (once per machine, a few minutes on 2 cores)"
  work=$(mktemp -d "$CACHE/llama.cpp/build.XXXX")
  tar xzf "$SDIST" -C "$work"
  src="$work/llama_cpp_python-$VERSION/vendor/llama.cpp"
  # -O1 and no llamafile/repack kernels: half the compile time; the audit's llama.cpp work is
  # small (quantizing, an importance matrix, one forward per audit sequence).
  cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_FLAGS_RELEASE="-O1 -DNDEBUG" -DCMAKE_CXX_FLAGS_RELEASE="-O1 -DNDEBUG" \
    -DBUILD_SHARED_LIBS=ON -DCMAKE_BUILD_RPATH_USE_ORIGIN=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF \
    -DGGML_LLAMAFILE=OFF -DGGML_CPU_REPACK=OFF -DGGML_OPENMP=OFF > "$work/configure.log"
  cmake --build "$work/build" -j "$(nproc)" --target llama-quantize llama-imatrix > "$work/build.log"
  stage="$work/out"
  mkdir -p "$stage/bin" "$stage/lib"
  cp "$work/build/bin/llama-quantize" "$work/build/bin/llama-imatrix" "$stage/bin/"
  find "$work/build" -name 'lib*.so*' -exec cp -P {} "$stage/lib/" \;
  cp "$SDIST" "$stage/" 2>/dev/null || true
  rm -rf "$DEST"
  mv "$stage" "$DEST"  # atomic: a half-built folder is never taken for a build
  rm -rf "$work"
fi

[ "$MODE" = build ] && { echo "llama.cpp: $DEST"; exit 0; }

# The bindings: pure Python with LLAMA_BUILD=OFF (nothing compiled), libraries from $DEST.
VENV=${2:?usage: build_llama_cpp.sh bind VENV}
PY="$VENV/bin/python"
if ! "$PY" -c "import importlib.metadata as m; assert m.version('llama_cpp_python') == '$VERSION'" 2>/dev/null; then
  CMAKE_ARGS="-DLLAMA_BUILD=OFF -DLLAVA_BUILD=OFF" "$PY" -m pip install -q --no-deps "$SDIST" diskcache==5.6.3
fi
echo "$DEST" > "$VENV/.llama-cpp"
echo "llama.cpp: $DEST"
