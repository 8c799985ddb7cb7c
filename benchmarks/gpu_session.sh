#!/usr/bin/env bash
# Run the GPU validation kit on a lent GPU machine that has no package registry.
#   bash benchmarks/gpu_session.sh WHEEL_DIR [gpu_session options...]
# WHEEL_DIR holds the wheels the machine lacks (xgboost with CUDA, shap, zarr, ...; see
# README "GPU validation"); they and ciml-ter itself go to /tmp/site, then the kit runs with
# results under $OUT (or benchmarks/results).
set -euo pipefail
wheels=${1:?usage: gpu_session.sh WHEEL_DIR [options]}
shift
site=/tmp/site
mkdir -p "$site"
python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" "$wheels"/*.whl
# ciml-ter itself: its wheel among the carried ones, else built from this checkout
ls "$wheels"/ciml_ter-*.whl >/dev/null 2>&1 || \
  python3 -m pip install -q --no-index --no-deps --no-build-isolation --target "$site" .
export PYTHONPATH="$site:$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
python3 -m benchmarks.gpu_session --out "${OUT:-benchmarks/results}" "$@"
