#!/usr/bin/env bash
# Prints the path of ONNX Runtime's shared library, fetching it first if it is not cached.
#
# The library comes from PyPI's onnxruntime==1.31.1 wheel (`pip download --no-deps`), the one
# file `onnxruntime/capi/libonnxruntime.so.1.31.1` unzipped into the cache directory
# ($SLUICE_ORT_CACHE, default ~/.cache/sluice/onnxruntime-1.31.1). Nothing else is installed.
# Usage: export ORT_DYLIB_PATH="$(scripts/fetch-onnxruntime.sh)"
set -euo pipefail
VERSION=1.31.1
CACHE="${SLUICE_ORT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice/onnxruntime-$VERSION}"
LIB="$CACHE/libonnxruntime.so.$VERSION"
if [ ! -s "$LIB" ]; then
  mkdir -p "$CACHE"
  TMP="$(mktemp -d)"
  trap 'rm -rf "$TMP"' EXIT
  echo "fetching onnxruntime==$VERSION from PyPI into $CACHE" >&2
  python3 -m pip download -q --disable-pip-version-check --no-deps \
    --only-binary=:all: "onnxruntime==$VERSION" -d "$TMP" >&2
  WHEEL="$(ls "$TMP"/onnxruntime-"$VERSION"-*.whl | head -n 1)"
  python3 - "$WHEEL" "$LIB" <<'PY'
import shutil, sys, zipfile
wheel, target = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z, z.open("onnxruntime/capi/libonnxruntime.so.1.31.1") as src, open(target + ".part", "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  mv "$LIB.part" "$LIB"
fi
echo "$LIB"
