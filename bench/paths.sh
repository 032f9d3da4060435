# Sourced by the bench scripts: where the default model, the WikiText-2 text and the cache are.
# DPTQ_CACHE, DPTQ_MODEL and DPTQ_TEXT override them.
# shellcheck shell=bash disable=SC2034
HERE=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)
CACHE=${DPTQ_CACHE:-$HOME/.cache/dptq}
M=${DPTQ_MODEL:-$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf}
W=${DPTQ_TEXT:-$HERE/../../shared/data/wikitext-2-raw-test.txt}
