#!/usr/bin/env python3
"""FP perplexity throughput of HF transformers on the same GGUF and the same windows as `dptq ppl`
(peer benchmark, bench/bench_peers.sh). Loading as tools/golden/ppl_reference.py does: the GGUF
dequantized to fp32 by the `gguf` package, the text tokenized once by SmolLM2's reference tokenizer
(tools/golden/smollm2_reference_tokenizer.py), non-overlapping windows of --seqlen tokens from the
start, tail dropped, exp(mean NLL over every predicted token) — the same tokens dptq evaluates.

    ~/.cache/dptq/refvenv/bin/python bench/peer_transformers_ppl.py MODEL --text W --max-windows 2 --threads 1
Prints one JSON object: ppl, windows, tokens, load_seconds (model load + tokenization) and
seconds (the windows' forward passes and NLL only), tokens_per_s = tokens / seconds.
"""
import argparse, json, math, os, pathlib, sys, time
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tools" / "golden"))
from smollm2_reference_tokenizer import reference_tokenizer  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--text", required=True)
    ap.add_argument("--seqlen", type=int, default=2048)
    ap.add_argument("--max-windows", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    gguf = pathlib.Path(a.model).resolve()
    t0 = time.perf_counter()
    ids = reference_tokenizer(gguf).encode(pathlib.Path(a.text).read_text(encoding="utf-8")).ids
    dtype = torch.float32 if a.dtype == "fp32" else torch.bfloat16
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=dtype).eval()
    load = time.perf_counter() - t0
    n = min(len(ids) // a.seqlen, a.max_windows)
    nll = 0.0
    t0 = time.perf_counter()
    with torch.inference_mode():
        for w in range(n):
            x = torch.tensor([ids[w * a.seqlen:(w + 1) * a.seqlen]])
            logits = model(x).logits[0, :-1].float()
            nll += torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="sum").item()
    secs = time.perf_counter() - t0
    print(json.dumps({"peer": "transformers", "transformers": transformers.__version__, "torch": torch.__version__,
                      "dtype": a.dtype, "threads": torch.get_num_threads(), "ppl": math.exp(nll / (n * (a.seqlen - 1))),
                      "windows": n, "seqlen": a.seqlen, "text_tokens": len(ids), "tokens": n * a.seqlen,
                      "load_seconds": load, "seconds": secs, "tokens_per_s": n * a.seqlen / secs}))


if __name__ == "__main__":
    main()
