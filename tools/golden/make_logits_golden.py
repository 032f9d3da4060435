#!/usr/bin/env python3
"""Golden logits of the default model from an independent reference: HF transformers loading the
same GGUF (dequantized to fp32 by the `gguf` package), fp32 on CPU.

Run (after `scripts/setup.sh --refvenv`):
    ~/.cache/dptq/refvenv/bin/python tools/golden/make_logits_golden.py
Writes tests/golden/logits_smollm2.json (committed). tests/test_model.cpp feeds the same token ids
to our LibTorch decoder and requires max |Δlogit| <= 1e-3 on the stored columns and positions.

What is stored, per prompt: the token ids (fed to both sides, so this checks the model alone;
tokenizer agreement has its own golden), for every position the logsumexp over the full vocabulary
and the argmax, and the logits of a fixed seeded sample of 1024 vocabulary columns plus each
position's top 16 (the full [T, 49152] matrices would be several MB).
"""
import json, os, pathlib, sys
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = pathlib.Path(__file__).resolve().parents[2]
CACHE = pathlib.Path(os.environ.get("DPTQ_CACHE", pathlib.Path.home() / ".cache/dptq"))
GGUF = CACHE / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = ROOT / "tests" / "golden" / "logits_smollm2.json"

PROMPTS = [
    "The capital of France is Paris, and the capital of Germany is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    "Quantization of large language models to four bits per activation is hard because",
    "<|im_start|>user\nWhat is a massive activation?<|im_end|>\n<|im_start|>assistant\n",
]

def main():
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(str(GGUF.parent), gguf_file=GGUF.name)
    model = AutoModelForCausalLM.from_pretrained(str(GGUF.parent), gguf_file=GGUF.name, dtype=torch.float32)
    model.eval()
    vocab = model.config.vocab_size
    rng = np.random.default_rng(1234)
    cols = sorted(rng.choice(vocab, size=1024, replace=False).tolist())
    out = {"generator": "tools/golden/make_logits_golden.py",
           "reference": f"transformers {__import__('transformers').__version__} + gguf, fp32 CPU, {GGUF.name}",
           "model": GGUF.name, "vocab_size": vocab, "columns": cols, "prompts": []}
    for text in PROMPTS:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].float()
        lse = torch.logsumexp(logits, -1)
        top = torch.topk(logits, 16, dim=-1)
        out["prompts"].append({
            "text": text, "ids": ids,
            "logsumexp": [round(float(x), 6) for x in lse],
            "argmax": [int(x) for x in logits.argmax(-1)],
            "sample_logits": [[round(float(x), 6) for x in row[cols]] for row in logits],
            "top_ids": top.indices.tolist(),
            "top_logits": [[round(float(x), 6) for x in row] for row in top.values],
        })
        print(f"{len(ids):3d} tokens  argmax(last)={int(logits[-1].argmax())} {tok.decode([int(logits[-1].argmax())])!r}", file=sys.stderr)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(json.dumps(out))
    tmp.replace(OUT)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)", file=sys.stderr)

if __name__ == "__main__":
    main()
