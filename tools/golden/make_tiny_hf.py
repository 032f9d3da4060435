#!/usr/bin/env python3
"""Writes the tiny random-weight HuggingFace folders under tests/fixtures/tiny/ and their golden.json.

GENERATED OUTPUT IS COMMITTED: tests/fixtures/tiny/<name>/ is produced by this script and checked
into git, so the C++ tests never need Python. Re-run only when the fixtures must change, then
commit the script and its output together.

How to run (from the repository root; the reference venv is made by scripts/setup.sh):

    HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
        ~/.cache/dptq/refvenv/bin/python tools/golden/make_tiny_hf.py [--out tests/fixtures/tiny]

Nothing is downloaded: tokenizers are trained here on a few KB of text this script writes itself,
weights are seeded random numbers. Models (hidden 64, 2 layers, 4 query / 2 kv heads, head_dim 16,
intermediate 128, vocab <= 512):

    llama2_spm    LlamaForCausalLM, SentencePiece BPE tokenizer.model (byte fallback, add_bos), untied head
    llama3_rope   LlamaForCausalLM, rope_scaling llama3 (factor 8, orig. max pos 64), byte-level BPE
                  tokenizer.json with the LLaMA-3 pre-tokenizer regex, BOS via post-processor, tied head
    mistral       MistralForCausalLM, sliding_window null, SentencePiece tokenizer.model
    qwen2         Qwen2ForCausalLM (q/k/v bias), byte-level BPE with the Qwen2 regex + NFC, no BOS,
                  config vocab (512) larger than the tokenizer's
    bf16_sharded  LlamaForCausalLM stored in bfloat16 in >= 2 shards + model.safetensors.index.json

config.json layout: llama2_spm, llama3_rope and bf16_sharded are rewritten to the layout of real
hub checkpoints (transformers 4.x: top-level "rope_theta", "rope_scaling", "torch_dtype");
mistral and qwen2 keep what transformers 5 writes ("rope_parameters" holding rope_theta, "dtype",
"layer_types"). Loaders must read both. The golden logits come from reloading each written folder
with transformers, so the files on disk define them.

golden.json (format "dptq-tiny-golden" 1.0.0), all floats rounded to 6 significant digits:
    prompts[i].text / ids            token ids from the HF tokenizer (AutoTokenizer on the folder)
    prompts[i].ids_backend           ids from the raw sentencepiece / tokenizers library
    prompts[i].top1 / max_logit      argmax and max of the fp32 logits at every position
    prompts[i].logits_positions      positions whose full logits row is stored (first two, every
                                     16th, middle, last)
    prompts[i].logits                fp32 logits at those positions, [len(positions)][vocab_size]
    residual_prompt0_last            h_0 .. h_L (DESIGN §4: input of each block, then the output of
                                     the last block before the final norm) at the last position
                                     of prompt 0, [n_layers + 1][hidden]
    safetensors_probes               a few tensors: dtype, shape, first values (exact, as stored)
    notes                            what is special about this model
"""
import argparse
import io
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import safetensors  # noqa: E402
import sentencepiece as spm  # noqa: E402
import tokenizers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import (AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM,  # noqa: E402
                          MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM)

ROOT = Path(__file__).resolve().parents[2]

PROMPTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello world! It's 2024: 12345 tokens, über-café naïve \U0001F642",
    "In 1969, Apollo 11 landed on the Moon.\nIt's    spaced\ttext -- don't   stop.",
]

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")

COMMON = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              intermediate_size=128, head_dim=16)


def training_text():
    """A few KB of deterministic English-ish text with digits, punctuation and some accents."""
    base = [
        "The quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun.",
        "Quantization maps real numbers onto a small grid of levels; four bits give sixteen levels.",
        "Large language models carry massive activations in a few channels of the residual stream.",
        "In 1969 the first people walked on the Moon, and in 2024 models read millions of tokens.",
        "It's a small world: we'll see what they've done, and I'm sure you'd like it.",
        "Hello world! Hello again, world. Goodbye, world; see you tomorrow at 10:30.",
        "Rotations spread outliers across channels so that a per-token quantizer loses less.",
        "The café in the old town serves crème brûlée, and the naïve tourist orders two of them.",
        "Über alles: the Zürich train leaves at 7:45 and arrives at 9:12 with 300 passengers.",
        "Numbers like 3.14159, 2.71828, 1.41421 and 1000000 appear in many scientific texts.",
        "She sells sea shells by the sea shore; the shells she sells are surely sea shells.",
        "A jump ratio compares the size of an update with the size of the stream it updates.",
        "Tokens, tokens everywhere: the tokenizer splits text into pieces it has seen before.",
        "def main():\n    print('hello, world')\n    return 0\n",
        "Rain in Spain stays mainly in the plain, said the teacher to the patient student.",
        "Between the lines of code there are tabs\tand spaces    and new lines\nfor structure.",
        "Don't stop believing; hold on to that feeling, sang the band in 1981.",
        "The model has 2 layers, 4 heads, 2 key value heads and a hidden size of 64.",
    ]
    lines = []
    for rep in range(6):
        for i, s in enumerate(base):
            lines.append(s if rep % 2 == 0 else s.lower())
            lines.append(f"Line {rep * len(base) + i}: value {(i * 37 + rep * 11) % 997} and {i + rep}.")
    return lines


# ---------------------------------------------------------------------------------------------
# Tokenizers


def make_spm(folder):
    """LLaMA-2 style SentencePiece BPE model; returns its vocabulary size."""
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(training_text()), model_writer=buf, model_type="bpe", vocab_size=384,
        byte_fallback=True, split_digits=True, allow_whitespace_only_pieces=True,
        remove_extra_whitespaces=False, normalization_rule_name="identity", add_dummy_prefix=True,
        character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1,
        hard_vocab_limit=False, minloglevel=2)
    (folder / "tokenizer.model").write_bytes(buf.getvalue())
    write_json(folder / "tokenizer_config.json", {
        "tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False,
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": None,
        "legacy": False, "clean_up_tokenization_spaces": False, "model_max_length": 512})
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    return sp.get_piece_size()


def spm_ids(folder, text):
    sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    return [sp.bos_id()] + sp.encode(text)


def make_bpe(folder, pattern, specials, bos, nfc, ignore_merges, vocab_size):
    """Byte-level BPE tokenizer.json (LLaMA-3 / Qwen2 layout); returns the tokenizer's size."""
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    if nfc:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(specials), min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(training_text(), trainer=trainer)
    tok.add_special_tokens(specials)  # ids after the learned vocabulary, as in the real models
    if bos:
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                          special_tokens=[(bos, tok.token_to_id(bos))])])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.save(str(folder / "tokenizer.json"))
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False,
           "model_max_length": 512}
    if bos:
        cfg.update(bos_token=bos, eos_token=specials[1], add_bos_token=True)
    else:
        cfg.update(bos_token=None, eos_token=specials[0], add_bos_token=False)
    write_json(folder / "tokenizer_config.json", cfg)
    return tok.get_vocab_size(with_added_tokens=True)


def bpe_ids(folder, text):
    return Tokenizer.from_file(str(folder / "tokenizer.json")).encode(text).ids


# ---------------------------------------------------------------------------------------------
# Models


def randomize(model, seed, embed_std=0.5, linear_std=0.15):
    """Weights large enough that attention is sharp and every component moves the logits (the
    default 0.02 init makes attention nearly uniform, hiding RoPE / GQA mistakes)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * noise)
            elif name.endswith(".bias"):
                p.copy_(0.1 * noise)
            elif "embed_tokens" in name:
                p.copy_(embed_std * noise)
            else:
                p.copy_(linear_std * noise)


def classic_config(folder, torch_dtype):
    """Rewrites config.json to the transformers 4.x / hub layout."""
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    rope = cfg.pop("rope_parameters")
    cfg["rope_theta"] = rope.pop("rope_theta")
    if rope.get("rope_type", "default") != "default":
        cfg["rope_scaling"] = rope
    else:
        cfg["rope_scaling"] = None
    cfg.pop("dtype", None)
    cfg["torch_dtype"] = torch_dtype
    write_json(path, dict(sorted(cfg.items())))


def residual_stream(model, ids):
    """h_0 .. h_L at every position: inputs of the decoder blocks, then the final norm's input."""
    captured = []
    hooks = [layer.register_forward_pre_hook(lambda m, args, kwargs: captured.append(args[0] if args else kwargs["hidden_states"]),
                                             with_kwargs=True)
             for layer in model.model.layers]
    hooks.append(model.model.norm.register_forward_pre_hook(lambda m, args: captured.append(args[0])))
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    for h in hooks:
        h.remove()
    return logits, [c[0].float() for c in captured]


def logit_positions(n):
    """Positions whose full logits row is stored: the first two, every 16th, the middle, the last."""
    return sorted({0, 1, n // 2, n - 1} | set(range(0, n, 16)))


def r6(x):
    return float(f"{x:.6g}")


def write_json(path, obj):
    path.write_text(dumps(obj) + "\n")


def dumps(o, indent=0):
    """JSON with one line per list of numbers (rows of logits), nested objects indented."""
    pad = " " * indent
    if isinstance(o, dict):
        if not o:
            return "{}"
        items = [f'{pad} {json.dumps(k)}: {dumps(v, indent + 1)}' for k, v in o.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(o, list) and o and all(isinstance(v, (list, dict)) for v in o):
        return "[\n" + ",\n".join(pad + " " + dumps(v, indent + 1) for v in o) + "\n" + pad + "]"
    return json.dumps(o, separators=(",", ":"), ensure_ascii=False)


def probes(folder, names, source=None):
    """First values of some tensors exactly as stored (read back with the safetensors library)."""
    out = []
    index = folder / "model.safetensors.index.json"
    weight_map = json.loads(index.read_text())["weight_map"] if index.exists() else None
    for name in names:
        shard = folder / (weight_map[name] if weight_map else "model.safetensors")
        with safe_open(str(shard), framework="pt") as f:
            t = f.get_tensor(name)
            dtype = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16"}[t.dtype]
            entry = {"tensor": name, "dtype": dtype, "shape": list(t.shape),
                     "first_values": [float(v) for v in t.flatten()[:8].float()]}  # exact, no rounding
            if source is not None:
                entry["source_fp32"] = [float(v) for v in source[name].flatten()[:8]]
            out.append(entry)
    return out


def build(out_root, name, arch, seed, notes, tokenizer, config_kwargs, save_dtype=torch.float32,
          shard_size=None, classic=True, spm_json=False):
    folder = out_root / name
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out_root))
    try:
        torch.manual_seed(seed)
        if tokenizer == "spm":
            tok_vocab = make_spm(tmp)
            backend_ids = spm_ids
        elif tokenizer == "llama3_bpe":
            tok_vocab = make_bpe(tmp, LLAMA3_PATTERN, ["<|begin_of_text|>", "<|end_of_text|>"],
                                 bos="<|begin_of_text|>", nfc=False, ignore_merges=True, vocab_size=400)
            backend_ids = bpe_ids
        else:
            tok_vocab = make_bpe(tmp, QWEN2_PATTERN, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                 bos=None, nfc=True, ignore_merges=False, vocab_size=400)
            backend_ids = bpe_ids
        vocab = config_kwargs.pop("vocab_size", tok_vocab)
        assert vocab >= tok_vocab and vocab <= 512, (vocab, tok_vocab)
        cfg_cls, model_cls = {"llama": (LlamaConfig, LlamaForCausalLM), "mistral": (MistralConfig, MistralForCausalLM),
                              "qwen2": (Qwen2Config, Qwen2ForCausalLM)}[arch]
        special = {}
        if tokenizer == "spm":
            special = dict(bos_token_id=1, eos_token_id=2)
        elif tokenizer == "llama3_bpe":
            t = Tokenizer.from_file(str(tmp / "tokenizer.json"))
            special = dict(bos_token_id=t.token_to_id("<|begin_of_text|>"), eos_token_id=t.token_to_id("<|end_of_text|>"))
        else:
            t = Tokenizer.from_file(str(tmp / "tokenizer.json"))
            special = dict(bos_token_id=None, eos_token_id=t.token_to_id("<|endoftext|>"))
        config = cfg_cls(vocab_size=vocab, **COMMON, **special, **config_kwargs)
        model = model_cls(config).eval()
        randomize(model, seed)
        source = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.to(save_dtype)
        kw = {"max_shard_size": shard_size} if shard_size else {}
        model.save_pretrained(tmp, **kw)
        if spm_json:
            # What real Mistral / LLaMA-2 repos ship next to tokenizer.model: the transformers
            # conversion of the SentencePiece model. Without it transformers 5 loads a Mistral folder
            # through a generic converter that drops SentencePiece's dummy prefix.
            transformers.LlamaTokenizer.from_pretrained(tmp).backend_tokenizer.save(str(tmp / "tokenizer.json"))
        if classic:
            classic_config(tmp, {torch.float32: "float32", torch.bfloat16: "bfloat16"}[save_dtype])

        # Golden values from the folder as written.
        hf_tok = AutoTokenizer.from_pretrained(tmp)
        ref = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32, attn_implementation="eager").eval()
        assert type(ref) is model_cls, type(ref)
        if "rope_scaling" in config_kwargs:
            rp = ref.config.rope_parameters
            for k, v in config_kwargs["rope_scaling"].items():
                assert rp[k] == v, (k, rp)
        prompts = []
        for i, text in enumerate(PROMPTS):
            ids = hf_tok(text)["input_ids"]
            b_ids = backend_ids(tmp, text)
            logits, resid = residual_stream(ref, ids)
            positions = logit_positions(len(ids))
            entry = {"text": text, "ids": ids, "ids_backend": b_ids,
                     "top1": logits.argmax(-1).tolist(),
                     "max_logit": [r6(v) for v in logits.max(-1).values.tolist()],
                     "logits_positions": positions,
                     "logits": [[r6(v) for v in logits[p].tolist()] for p in positions]}
            if ids != b_ids:
                notes.append(f"prompt {i}: AutoTokenizer ids differ from the {tokenizer} backend ids")
            prompts.append(entry)
            if i == 0:
                resid0 = [[r6(v) for v in h[-1].tolist()] for h in resid]
        n_tensors = 0
        for shard in sorted(tmp.glob("*.safetensors")):
            with safe_open(str(shard), framework="pt") as f:
                n_tensors += len(list(f.keys()))
            os.chmod(shard, 0o644)
        with safe_open(str(sorted(tmp.glob("*.safetensors"))[0]), framework="pt") as f:
            st_meta = f.metadata() or {}
        probe_names = ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
                       "model.layers.1.mlp.down_proj.weight", "model.norm.weight"]
        if arch == "qwen2":
            probe_names.append("model.layers.0.self_attn.k_proj.bias")
        golden = {
            "format": "dptq-tiny-golden", "version": "1.0.0",
            "generated_by": "tools/golden/make_tiny_hf.py (do not edit by hand)",
            "model": name, "architecture": model_cls.__name__,
            "stored_dtype": {torch.float32: "F32", torch.bfloat16: "BF16"}[save_dtype],
            "logits_dtype": "F32 (weights upcast to fp32, eager attention)",
            "seed": seed,
            "versions": {"transformers": transformers.__version__, "torch": torch.__version__,
                         "safetensors": safetensors.__version__, "tokenizers": tokenizers.__version__,
                         "sentencepiece": spm.__version__},
            "config_layout": "hub (transformers 4.x)" if classic else "transformers 5",
            "tokenizer": tokenizer, "tokenizer_vocab": tok_vocab, "vocab_size": vocab,
            "n_tensors": n_tensors, "notes": notes,
            "safetensors_metadata": st_meta,
            "safetensors_probes": probes(tmp, probe_names, source if save_dtype != torch.float32 else None),
            "residual_prompt0_last": resid0,
            "prompts": prompts,
        }
        write_json(tmp / "golden.json", golden)
        os.chmod(tmp, 0o755)
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    size = sum(p.stat().st_size for p in folder.iterdir())
    print(f"{name}: {size / 1024:.0f} KiB, vocab {vocab}, tensors {n_tensors}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "tests" / "fixtures" / "tiny"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    build(out, "llama2_spm", "llama", 101, [
        "LLaMA-2 layout: SentencePiece BPE with byte fallback (tokenizer.model only, no tokenizer.json), "
        "add_bos_token true, untied lm_head, rope_theta 10000, no rope scaling.",
        "Prompt 1 contains an emoji that only byte-fallback pieces (<0xF0> ...) can encode."],
        "spm", dict(max_position_embeddings=256, rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=False))
    build(out, "llama3_rope", "llama", 102, [
        "LLaMA-3.1 style: rope_scaling rope_type llama3 (factor 8, low_freq_factor 1, high_freq_factor 4, "
        "original_max_position_embeddings 64), rope_theta 500000, tied embeddings (no lm_head.weight stored).",
        "Byte-level BPE tokenizer.json with the LLaMA-3 Split regex, ignore_merges true, BOS "
        "<|begin_of_text|> added by the TemplateProcessing post-processor; special tokens after the learned vocab.",
        "With head_dim 16 and original_max_position_embeddings 64 the llama3 scaling touches low, middle "
        "(smoothed) and high frequency bands."],
        "llama3_bpe", dict(max_position_embeddings=512, rms_norm_eps=1e-5, tie_word_embeddings=True,
                           rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                         "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
                           rope_theta=500000.0))
    build(out, "mistral", "mistral", 103, [
        "MistralForCausalLM, sliding_window null (full attention), untied head, config.json as transformers 5 "
        "writes it (rope_parameters).",
        "Tokenizer: SentencePiece tokenizer.model (same recipe as llama2_spm) plus the tokenizer.json that "
        "transformers converts from it (BPE + byte_fallback + Metaspace), as real Mistral/LLaMA-2 repos ship "
        "both. The ids come from tokenizer.json via AutoTokenizer and equal libsentencepiece's (ids_backend) "
        "with BOS prepended. A loader must not read this tokenizer.json as byte-level BPE: prefer tokenizer.model."],
        "spm", dict(max_position_embeddings=256, rope_theta=1000000.0, rms_norm_eps=1e-5, sliding_window=None,
                    tie_word_embeddings=False), classic=False, spm_json=True)
    build(out, "qwen2", "qwen2", 104, [
        "Qwen2ForCausalLM: q/k/v projections have biases (random, std 0.1), o_proj has none; rms_norm_eps 1e-6.",
        "Byte-level BPE with the Qwen2 regex (single digits) and an NFC normalizer; no BOS is added.",
        "config vocab_size 512 is larger than the tokenizer (padded embedding rows, as in real Qwen2).",
        "config.json as transformers 5 writes it (rope_parameters, layer_types)."],
        "qwen2_bpe", dict(vocab_size=512, max_position_embeddings=256, rope_theta=1000000.0, rms_norm_eps=1e-6,
                          tie_word_embeddings=False, use_sliding_window=False), classic=False)
    build(out, "bf16_sharded", "llama", 105, [
        "LLaMA stored in bfloat16, sharded (max_shard_size 100KB) with model.safetensors.index.json; "
        "untied head; SentencePiece tokenizer as llama2_spm.",
        "Golden logits are computed in fp32 from the bf16 weights upcast exactly; safetensors_probes "
        "carry the fp32 values before the cast (source_fp32) to check fp32->bf16 rounding."],
        "spm", dict(max_position_embeddings=256, rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=False),
        save_dtype=torch.bfloat16, shard_size="100KB")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"total {total / 1024:.0f} KiB in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
