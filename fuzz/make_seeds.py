#!/usr/bin/env python3
"""Seed corpora of the fuzz targets (fuzz/*.cpp), one folder per target under OUT.

    python3 fuzz/make_seeds.py OUT [--trace-seed-tool build/sanitize/make_trace_seed]

Every seed is a small valid input, so that libFuzzer's mutations start inside the formats:
  gguf           two GGUF v3 files written here (a byte-level BPE and a SentencePiece-style
                 vocabulary, F32 / F16 / BF16 / Q4_0 / Q4_1 / Q8_0 tensors), from the GGUF spec
  safetensors    two files written here (F32, F16, BF16, I8 tensors, __metadata__)
  tokenizer_json the tokenizer.json files of the tiny fixtures (tests/fixtures/tiny, made by
                 tools/golden from transformers)
  spm_model      the fixtures' SentencePiece tokenizer.model
  plan           committed plans (formats 1.1 and 1.0)
  quant_config   quant_config.json texts built around a committed plan
  trace          a 4-block trace written by the trace writer itself (make_trace_seed)
Deterministic: the same files every run.
"""
import argparse
import json
import pathlib
import shutil
import struct
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def gguf_string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


# GGUF metadata value types
U32, I32, F32, BOOL, STRING, ARRAY = 4, 5, 6, 7, 8, 9


def gguf_value(kind, v):
    if kind == U32:
        return struct.pack("<I", v)
    if kind == I32:
        return struct.pack("<i", v)
    if kind == F32:
        return struct.pack("<f", v)
    if kind == BOOL:
        return struct.pack("<?", v)
    if kind == STRING:
        return gguf_string(v)
    raise ValueError(kind)


def gguf_file(kv, tensors, alignment=32):
    """kv: [(key, type, value)] (ARRAY value = (elem_type, list)); tensors: [(name, dims, type, bytes)]."""
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv)))
    for key, kind, v in kv:
        out += gguf_string(key) + struct.pack("<I", kind)
        if kind == ARRAY:
            et, items = v
            out += struct.pack("<IQ", et, len(items)) + b"".join(gguf_value(et, x) for x in items)
        else:
            out += gguf_value(kind, v)
    offset = 0
    blobs = []
    for name, dims, ttype, data in tensors:
        out += gguf_string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", ttype, offset)
        pad = (-len(data)) % alignment
        blobs.append(data + b"\0" * pad)
        offset += len(data) + pad
    out += b"\0" * ((-len(out)) % alignment)
    return bytes(out) + b"".join(blobs)


def byte_level_vocab():
    # GPT-2's byte-to-unicode alphabet: printable bytes map to themselves, the rest to U+0100...
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    table, n = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + n)
            n += 1
    return [table[b] for b in range(256)]


def tensors():
    f32 = struct.pack("<8f", *[0.5 * i - 1 for i in range(8)])
    f16 = struct.pack("<8e", *[0.25 * i for i in range(8)])
    bf16 = b"".join(struct.pack("<f", 1.0 + i)[2:] for i in range(8))
    q4_0 = struct.pack("<e", 0.5) + bytes(range(16))                 # 32 elements
    q4_1 = struct.pack("<ee", 0.5, -1.0) + bytes(range(16, 32))      # 32 elements
    q8_0 = struct.pack("<e", 0.125) + bytes((i * 7) % 256 for i in range(32))
    return [("a.f32", [4, 2], 0, f32), ("b.f16", [8], 1, f16), ("c.bf16", [8], 30, bf16),
            ("d.q4_0", [32], 2, q4_0), ("e.q4_1", [32], 3, q4_1), ("f.q8_0", [32, 1], 8, q8_0)]


def gguf_seeds(out):
    vocab = byte_level_vocab()
    merges = ["h e", "l l", "he ll", "o r", "Ġ w", "Ġw or"]
    tokens = vocab + ["he", "ll", "hell", "or", "Ġw", "Ġwor", "<|im_start|>", "<|endoftext|>"]
    types = [1] * (len(tokens) - 2) + [3, 3]
    bpe = [("general.architecture", STRING, "llama"), ("general.name", STRING, "seed"),
           ("llama.block_count", U32, 2), ("tokenizer.ggml.model", STRING, "gpt2"),
           ("tokenizer.ggml.pre", STRING, "smollm"),
           ("tokenizer.ggml.tokens", ARRAY, (STRING, tokens)),
           ("tokenizer.ggml.token_type", ARRAY, (I32, types)),
           ("tokenizer.ggml.merges", ARRAY, (STRING, merges)),
           ("tokenizer.ggml.bos_token_id", U32, len(tokens) - 1),
           ("tokenizer.ggml.eos_token_id", U32, len(tokens) - 1)]
    (out / "bpe.gguf").write_bytes(gguf_file(bpe, tensors()))
    pieces = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + ["▁", "▁h", "e", "l", "o", "▁hello", "w"]
    scores = [0.0] * 259 + [-1.0, -2.0, -3.0, -4.0, -5.0, -0.5, -6.0]
    ttypes = [2, 3, 3] + [6] * 256 + [1] * 7
    spm = [("general.architecture", STRING, "llama"), ("general.alignment", U32, 64),
           ("tokenizer.ggml.model", STRING, "llama"),
           ("tokenizer.ggml.tokens", ARRAY, (STRING, pieces)),
           ("tokenizer.ggml.scores", ARRAY, (F32, scores)),
           ("tokenizer.ggml.token_type", ARRAY, (I32, ttypes)),
           ("tokenizer.ggml.add_space_prefix", BOOL, True),
           ("tokenizer.ggml.add_bos_token", BOOL, True),
           ("tokenizer.ggml.bos_token_id", U32, 1), ("tokenizer.ggml.eos_token_id", U32, 2),
           ("tokenizer.ggml.unknown_token_id", U32, 0)]
    (out / "spm.gguf").write_bytes(gguf_file(spm, tensors()[:2], alignment=64))


def safetensors_file(entries, metadata):
    header, data = {}, b""
    for name, dtype, shape, blob in entries:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    if metadata is not None:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((-len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + data


def safetensors_seeds(out):
    f32 = struct.pack("<6f", *[0.5 * i for i in range(6)])
    f16 = struct.pack("<4e", 1.0, -2.0, 0.5, 65504.0)
    bf16 = b"".join(struct.pack("<f", x)[2:] for x in (1.0, -1.5, 3.0, 0.0))
    i8 = bytes([1, 255, 3, 128])
    (out / "mixed.safetensors").write_bytes(safetensors_file(
        [("w.f32", "F32", [2, 3], f32), ("w.f16", "F16", [4], f16), ("w.bf16", "BF16", [2, 2], bf16),
         ("w.i8", "I8", [4], i8)], {"format": "pt"}))
    (out / "scalar.safetensors").write_bytes(safetensors_file([("s", "F32", [], struct.pack("<f", 2.0))], None))


def copy_all(files, out):
    for i, f in enumerate(files):
        shutil.copyfile(f, out / f"{i:02d}_{f.parent.name}_{f.name}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=pathlib.Path)
    ap.add_argument("--trace-seed-tool", help="make_trace_seed executable (the trace seed is skipped without it)")
    a = ap.parse_args()
    dirs = {n: a.out / n for n in ("gguf", "safetensors", "tokenizer_json", "spm_model", "plan", "quant_config", "trace")}
    for d in dirs.values():
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    gguf_seeds(dirs["gguf"])
    safetensors_seeds(dirs["safetensors"])
    fixtures = ROOT / "tests" / "fixtures" / "tiny"
    copy_all(sorted(fixtures.glob("*/tokenizer.json")), dirs["tokenizer_json"])
    copy_all(sorted(fixtures.glob("*/tokenizer.model"))[:1], dirs["spm_model"])
    plans = [ROOT / "docs/data/sensitivity/site_quarot-rtn_dynamicptq.plan.json",   # 1.1, site-level
             ROOT / "docs/data/results/full/quarot-rtn_dynamicptq_k8.plan.json"]   # 1.0
    copy_all(plans, dirs["plan"])
    plan = json.loads(plans[0].read_text())
    qc = {"format": "dptq-quantized", "version": "1.0", "method": "quarot-rtn",
          "model": {"name": "seed", "fingerprint": plan["model_fingerprint"]},
          "activations": {"quantized": True},
          "rotations": {"online": {"down_proj_input": {"kind": "random_hadamard", "seed": 1},
                                   "o_proj_heads": {"kind": "matrix", "seed": 0}}},
          "plan": plan}
    (dirs["quant_config"] / "quarot.json").write_text(json.dumps(qc))
    qc.update(method="rtn", rotations=None, activations={"quantized": False})
    (dirs["quant_config"] / "rtn.json").write_text(json.dumps(qc))
    if a.trace_seed_tool:
        subprocess.run([a.trace_seed_tool, str(dirs["trace"] / "seed.h5")], check=True)
    n = sum(len(list(d.iterdir())) for d in dirs.values())
    print(f"make_seeds: {n} seed files under {a.out}")


if __name__ == "__main__":
    sys.exit(main())
