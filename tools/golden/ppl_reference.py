#!/usr/bin/env python3
"""Reference perplexity of the default model on WikiText-2 with HF transformers (fp32, CPU), by
the same protocol as `dptq ppl`: tokenize the whole file once (SmolLM2 adds no BOS), cut
non-overlapping windows of --seqlen tokens, drop the tail, exp(mean NLL over every predicted
token). The model is the same GGUF, dequantized by the `gguf` package.

Tokenization: the HF `tokenizers` library configured as SmolLM2's original tokenizer.json
(Digits(individual_digits) then ByteLevel, BPE with the GGUF's vocab and merges) — see
tools/golden/make_tokenizer_golden.py for why not transformers' own GGUF conversion.

    ~/.cache/dptq/refvenv/bin/python tools/golden/ppl_reference.py [--seqlen 2048] [--max-windows N]
Prints one JSON object (ppl, windows, tokens, seconds).
"""
import argparse, json, math, os, pathlib, sys, time
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
from transformers import AutoModelForCausalLM

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from smollm2_reference_tokenizer import reference_tokenizer  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
CACHE = pathlib.Path(os.environ.get("DPTQ_CACHE", pathlib.Path.home() / ".cache/dptq"))
GGUF = CACHE / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--text", default=str(ROOT.parent / "shared/data/wikitext-2-raw-test.txt"))
    ap.add_argument("--seqlen", type=int, default=2048)
    ap.add_argument("--max-windows", type=int, default=-1)
    a = ap.parse_args()
    text = pathlib.Path(a.text).read_text(encoding="utf-8")
    ids = reference_tokenizer(GGUF).encode(text).ids
    model = AutoModelForCausalLM.from_pretrained(str(GGUF.parent), gguf_file=GGUF.name, dtype=torch.float32).eval()
    n = len(ids) // a.seqlen
    if a.max_windows >= 0:
        n = min(n, a.max_windows)
    t0 = time.time()
    nll = 0.0
    with torch.no_grad():
        for w in range(n):
            x = torch.tensor([ids[w * a.seqlen:(w + 1) * a.seqlen]])
            logits = model(x).logits[0, :-1].float()
            nll += torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="sum").item()
            print(f"window {w + 1}/{n}  running ppl {math.exp(nll / ((w + 1) * (a.seqlen - 1))):.4f}", file=sys.stderr)
    secs = time.time() - t0
    print(json.dumps({"reference": "transformers", "ppl": math.exp(nll / (n * (a.seqlen - 1))), "windows": n,
                      "text_tokens": len(ids), "tokens": n * a.seqlen, "seqlen": a.seqlen, "seconds": secs,
                      "tokens_per_s": n * a.seqlen / secs}, indent=2))

if __name__ == "__main__":
    main()
