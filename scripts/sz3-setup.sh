#!/bin/sh
# Sets up what the `sz3` feature (the SZ3 baseline of the rd study) needs to build:
# CMake from PyPI into .sz3-venv/, and pkg-config, libzstd and libclang from Debian.
# Then:  PATH="$PWD/.sz3-venv/bin:$PATH" cargo build --release --features sz3 --bin rd
set -eu
cd "$(dirname "$0")/.."
if ! command -v pkg-config >/dev/null || ! pkg-config --exists libzstd || ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1; then
  SUDO=$( [ "$(id -u)" = 0 ] && echo "" || echo sudo )
  $SUDO apt-get install -y pkg-config libzstd-dev libclang-dev
fi
if [ ! -x .sz3-venv/bin/cmake ]; then
  python3 -m venv .sz3-venv
  .sz3-venv/bin/pip install --quiet cmake
fi
echo "ready: PATH=\"$PWD/.sz3-venv/bin:\$PATH\" cargo build --release --features sz3 --bin rd"
