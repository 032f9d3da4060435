#!/usr/bin/env python3
"""The bad-input table (issue 16, docs/robustness.md): every reader and command, fed a broken file
or argument, must exit with code 2 and print exactly one error line that names the file (or the
option) and the problem. Nothing may crash, hang or leave a half-written output behind.

    python3 tests/robustness/bad_inputs.py DPTQ [--model GGUF] [--markdown]

DPTQ is the `dptq` binary. The GGUF cases corrupt copies of the default model (--model; they are
skipped without it); the others corrupt copies of the tiny HF fixtures (tests/fixtures/tiny), a
trace and a plan made on the spot. --markdown prints the table of docs/robustness.md.
Exit status: 0 when every case behaves, 1 otherwise (ctest runs it).
"""
import argparse
import json
import os
import pathlib
import shutil
import struct
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "fixtures" / "tiny"

# ---------------------------------------------------------------- GGUF layout (to patch fields)
GGUF_SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def gguf_layout(path):
    """Offsets of the header fields, the first kv key length and every tensor info of a GGUF file."""
    with open(path, "rb") as f:
        head = f.read(8 << 20)
    pos = 4 + 4
    n_tensors_at, n_kv_at = pos, pos + 8
    n_tensors, n_kv = struct.unpack_from("<QQ", head, pos)
    pos += 16
    first_key_len_at = pos

    def skip_value(t, pos):
        if t in GGUF_SCALAR:
            return pos + GGUF_SCALAR[t]
        if t == 8:
            (n,) = struct.unpack_from("<Q", head, pos)
            return pos + 8 + n
        if t == 9:
            et, n = struct.unpack_from("<IQ", head, pos)
            pos += 12
            if et in GGUF_SCALAR:
                return pos + n * GGUF_SCALAR[et]
            for _ in range(n):
                pos = skip_value(et, pos)
            return pos
        raise ValueError(f"GGUF value type {t}")

    for _ in range(n_kv):
        (klen,) = struct.unpack_from("<Q", head, pos)
        pos += 8 + klen
        (t,) = struct.unpack_from("<I", head, pos)
        pos = skip_value(t, pos + 4)
    tensors = []
    for _ in range(n_tensors):
        (nlen,) = struct.unpack_from("<Q", head, pos)
        name = head[pos + 8: pos + 8 + nlen].decode()
        name_at = pos + 8
        pos += 8 + nlen
        (nd,) = struct.unpack_from("<I", head, pos)
        dims = struct.unpack_from("<" + "Q" * nd, head, pos + 4)
        pos += 4 + 8 * nd
        ttype, off = struct.unpack_from("<IQ", head, pos)
        tensors.append({"name": name, "name_at": name_at, "dims": dims, "type_at": pos, "type": ttype, "offset": off})
        pos += 12
    data_start = (pos + 31) // 32 * 32
    return {"n_tensors_at": n_tensors_at, "n_kv_at": n_kv_at, "first_key_len_at": first_key_len_at,
            "tensors": tensors, "data_start": data_start}


def patch(path, at, data):
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(data)


def truncate_copy(src, dst, n):
    with open(src, "rb") as f, open(dst, "wb") as g:
        g.write(f.read(n))
    return dst


# ---------------------------------------------------------------- safetensors helpers
def st_read(path):
    b = pathlib.Path(path).read_bytes()
    (n,) = struct.unpack_from("<Q", b)
    return json.loads(b[8:8 + n]), b[8 + n:]


def st_write(path, header_text, data):
    h = header_text.encode()
    h += b" " * ((-len(h)) % 8)
    pathlib.Path(path).write_bytes(struct.pack("<Q", len(h)) + h + data)


def tiny(tmp, name="llama2_spm"):
    dst = tmp / f"{name}-copy"
    shutil.copytree(TINY / name, dst)
    return dst


def st_mutate(tmp, fn):
    """A copy of the llama2_spm fixture whose model.safetensors header/data went through fn."""
    d = tiny(tmp)
    p = d / "model.safetensors"
    h, data = st_read(p)
    h, data, text = fn(h, bytearray(data))
    st_write(p, text if text is not None else json.dumps(h), bytes(data))
    return d, p


def set_floats(h, data, name, value):
    e = h[name]
    a, b = e["data_offsets"]
    data[a:a + 16] = struct.pack("<4f", *([value] * 4))
    return h, data, None


def edit_json(path, keys, value):
    """Sets the field `keys` (a key, or a tuple of keys and indices) of the JSON file to `value`."""
    keys = (keys,) if isinstance(keys, str) else keys
    j = json.loads(pathlib.Path(path).read_text())
    node = j
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = value
    pathlib.Path(path).write_text(json.dumps(j))
    return path


# ---------------------------------------------------------------- the cases
CASES = []


def case(reader, what):
    def register(fn):
        CASES.append((reader, what, fn))
        return fn
    return register


def regression(reader, what, name, command):
    """A case replaying fuzz/regressions/NAME with `dptq COMMAND FILE`."""
    @case(reader, what)
    def _(tmp, model):
        p = ROOT / "fuzz" / "regressions" / name
        return [command, str(p)], p


def text_file(tmp, content=b"The quick brown fox jumps over the lazy dog. " * 40):
    p = tmp / "text.txt"
    p.write_bytes(content)
    return p


def ppl(model, tmp, *extra):
    return ["ppl", str(model), "--text", str(text_file(tmp)), "--seqlen", "32", "--max-windows", "1", *extra]


# GGUF (copies of the default model)
@case("GGUF", "truncated inside the magic (3 bytes)")
def _(tmp, model):
    p = truncate_copy(model, tmp / "m.gguf", 3)
    return ["info", str(p)], p


@case("GGUF", "truncated inside the header (20 bytes)")
def _(tmp, model):
    p = truncate_copy(model, tmp / "m.gguf", 20)
    return ["info", str(p)], p


@case("GGUF", "truncated inside the metadata (4 KiB)")
def _(tmp, model):
    p = truncate_copy(model, tmp / "m.gguf", 4096)
    return ["info", str(p)], p


@case("GGUF", "truncated inside the tensor data (half the file)")
def _(tmp, model):
    p = truncate_copy(model, tmp / "m.gguf", os.path.getsize(model) // 2)
    return ["info", str(p)], p


@case("GGUF", "wrong magic")
def _(tmp, model):
    p = truncate_copy(model, tmp / "m.gguf", 1 << 20)
    patch(p, 0, b"GGML")
    return ["info", str(p)], p


@case("GGUF", "unknown version 99")
def _(tmp, model):
    p = shutil.copyfile(model, tmp / "m.gguf")
    patch(p, 4, struct.pack("<I", 99))
    return ["info", str(p)], p


@case("GGUF", "lying tensor count (2^60)")
def _(tmp, model):
    p = shutil.copyfile(model, tmp / "m.gguf")
    patch(p, gguf_layout(p)["n_tensors_at"], struct.pack("<Q", 1 << 60))
    return ["info", str(p)], p


@case("GGUF", "lying metadata count (2^40)")
def _(tmp, model):
    p = shutil.copyfile(model, tmp / "m.gguf")
    patch(p, gguf_layout(p)["n_kv_at"], struct.pack("<Q", 1 << 40))
    return ["info", str(p)], p


@case("GGUF", "lying string length (first key, 2^62)")
def _(tmp, model):
    p = shutil.copyfile(model, tmp / "m.gguf")
    patch(p, gguf_layout(p)["first_key_len_at"], struct.pack("<Q", 1 << 62))
    return ["info", str(p)], p


@case("GGUF", "unknown tensor type 99")
def _(tmp, model):
    p = shutil.copyfile(model, tmp / "m.gguf")
    patch(p, gguf_layout(p)["tensors"][0]["type_at"], struct.pack("<I", 99))
    return ["info", str(p)], p


@case("GGUF", "tensor offset past the end of the file")
def _(tmp, model):
    p = shutil.copyfile(model, tmp / "m.gguf")
    t = gguf_layout(p)["tensors"][-1]
    patch(p, t["type_at"] + 4, struct.pack("<Q", 1 << 40))
    return ["info", str(p)], p


@case("GGUF", "duplicate tensor name")
def _(tmp, model):
    p = shutil.copyfile(model, tmp / "m.gguf")
    ts = gguf_layout(p)["tensors"]
    a, b = next((x, y) for x in ts for y in ts if x is not y and len(x["name"]) == len(y["name"]))
    patch(p, b["name_at"], a["name"].encode())
    return ["info", str(p)], p


@case("GGUF", "NaN in an F32 weight (a norm)")
def _(tmp, model):
    p = shutil.copyfile(model, tmp / "m.gguf")
    lay = gguf_layout(p)
    t = next(x for x in lay["tensors"] if x["type"] == 0)
    patch(p, lay["data_start"] + t["offset"], struct.pack("<4f", *[float("nan")] * 4))
    return ppl(p, tmp), p


regression("GGUF", "tensor dimensions whose product overflows int64 (a fuzz_gguf crash, fixed)", "gguf/numel_overflow.gguf", "info")


regression("GGUF", "lying metadata array count (a fuzz_gguf out-of-memory, fixed)", "gguf/array_count_oom.gguf", "info")


@case("GGUF", "a directory named like the model file")
def _(tmp, model):
    p = tmp / "m.gguf"
    p.mkdir()
    return ["info", str(p)], p


# HF folders: safetensors
@case("safetensors", "truncated (half the file)")
def _(tmp, model):
    d = tiny(tmp)
    p = d / "model.safetensors"
    truncate_copy(TINY / "llama2_spm" / "model.safetensors", p, os.path.getsize(p) // 2)
    return ["info", str(d)], p


@case("safetensors", "header length larger than the file")
def _(tmp, model):
    d = tiny(tmp)
    p = d / "model.safetensors"
    patch(p, 0, struct.pack("<Q", 1 << 50))
    return ["info", str(d)], p


@case("safetensors", "header is not JSON")
def _(tmp, model):
    d, p = st_mutate(tmp, lambda h, data: (h, data, "{\"a\": [1, 2" + " " * 20))
    return ["info", str(d)], p


@case("safetensors", "duplicate tensor name in the header")
def _(tmp, model):
    def dup(h, data):
        text = json.dumps(h)
        k = "model.norm.weight"
        text = text[:-1] + ", " + json.dumps(k) + ": " + json.dumps(h[k]) + "}"
        return h, data, text
    d, p = st_mutate(tmp, dup)
    return ["info", str(d)], p


@case("safetensors", "wrong dtype for a weight (I32)")
def _(tmp, model):
    def f(h, data):
        h["model.norm.weight"]["dtype"] = "I32"
        return h, data, None
    d, p = st_mutate(tmp, f)
    return ppl(d, tmp), p


@case("safetensors", "data_offsets past the end of the data")
def _(tmp, model):
    def f(h, data):
        e = h["model.norm.weight"]
        e["data_offsets"] = [e["data_offsets"][0], len(data) + 4096]
        return h, data, None
    d, p = st_mutate(tmp, f)
    return ["info", str(d)], p


@case("safetensors", "unknown dtype string")
def _(tmp, model):
    def f(h, data):
        h["model.norm.weight"]["dtype"] = "F12"
        return h, data, None
    d, p = st_mutate(tmp, f)
    return ["info", str(d)], p


@case("safetensors", "NaN in a weight")
def _(tmp, model):
    d, p = st_mutate(tmp, lambda h, data: set_floats(h, data, "model.layers.0.mlp.down_proj.weight", float("nan")))
    return ppl(d, tmp), p


@case("safetensors", "Inf in a weight")
def _(tmp, model):
    d, p = st_mutate(tmp, lambda h, data: set_floats(h, data, "model.embed_tokens.weight", float("inf")))
    return ppl(d, tmp), p


@case("safetensors", "tensor shape disagrees with config.json")
def _(tmp, model):
    def f(h, data):
        h["model.norm.weight"]["shape"] = [32]
        a, _ = h["model.norm.weight"]["data_offsets"]
        h["model.norm.weight"]["data_offsets"] = [a, a + 128]
        return h, data, None
    d, p = st_mutate(tmp, f)
    return ppl(d, tmp), p


# HF folders: config and tokenizer
@case("config.json", "missing")
def _(tmp, model):
    d = tiny(tmp)
    (d / "config.json").unlink()
    return ["info", str(d)], d / "config.json"


@case("config.json", "truncated JSON")
def _(tmp, model):
    d = tiny(tmp)
    p = d / "config.json"
    p.write_text(p.read_text()[:100])
    return ["info", str(d)], p


@case("config.json", "num_hidden_layers is a string")
def _(tmp, model):
    d = tiny(tmp)
    p = d / "config.json"
    edit_json(p, "num_hidden_layers", "two")
    return ["info", str(d)], p


@case("config.json", "negative hidden_size")
def _(tmp, model):
    d = tiny(tmp)
    p = d / "config.json"
    edit_json(p, "hidden_size", -64)
    return ["info", str(d)], p


@case("tokenizer.json", "truncated")
def _(tmp, model):
    d = tiny(tmp, "qwen2")
    p = d / "tokenizer.json"
    p.write_bytes(p.read_bytes()[:3000])
    return ["info", str(d)], p


@case("tokenizer.json", "merges reference unknown tokens")
def _(tmp, model):
    d = tiny(tmp, "qwen2")
    p = d / "tokenizer.json"
    merges = json.loads(p.read_text())["model"]["merges"]
    edit_json(p, ("model", "merges"), ["zzzq yyyq"] + list(merges))
    return ppl(d, tmp), p


@case("tokenizer.model", "not a SentencePiece model")
def _(tmp, model):
    d = tiny(tmp)
    p = d / "tokenizer.model"
    p.write_bytes(b"\x0a\xff\xff\xff\xff\x0f garbage")
    return ["info", str(d)], p


@case("tokenizer.model", "a piece with a newline in the loader's message (a fuzz_spm_model crash, fixed)")
def _(tmp, model):
    d = tiny(tmp)
    p = d / "tokenizer.model"
    shutil.copyfile(ROOT / "fuzz" / "regressions" / "spm_model" / "newline_in_message.model", p)
    return ["info", str(d)], p


@case("tokenizer.json", "a token id that is a huge float (a fuzz_tokenizer_json crash, fixed)")
def _(tmp, model):
    d = tiny(tmp, "qwen2")
    p = d / "tokenizer.json"
    shutil.copyfile(ROOT / "fuzz" / "regressions" / "tokenizer_json" / "float_token_id.json", p)
    return ["info", str(d)], p


@case("tokenizer.model", "an empty piece the trie cannot hold (a fuzz_spm_model crash, fixed)")
def _(tmp, model):
    d = tiny(tmp)
    p = d / "tokenizer.model"
    shutil.copyfile(ROOT / "fuzz" / "regressions" / "spm_model" / "darts_empty_key.model", p)
    return ["info", str(d)], p


# Plans
def plan_for_tiny(tmp, dptq, trace):
    out = tmp / "p.plan.json"
    subprocess.run([dptq, "plan", str(trace), "--policy", "first-last", "--budget", "1", "--out", str(out)],
                   check=True, capture_output=True)
    return out


@case("plan", "truncated JSON")
def _(tmp, model):
    p = plan_for_tiny(tmp, DPTQ, make_trace(tmp))
    p.write_text(p.read_text()[:200])
    return ppl(TINY / "llama2_spm", tmp, "--plan", str(p)), p


@case("plan", "unknown version 9.0")
def _(tmp, model):
    p = plan_for_tiny(tmp, DPTQ, make_trace(tmp))
    edit_json(p, "version", "9.0")
    return ppl(TINY / "llama2_spm", tmp, "--plan", str(p)), p


@case("plan", "block index out of range")
def _(tmp, model):
    p = plan_for_tiny(tmp, DPTQ, make_trace(tmp))
    edit_json(p, ("blocks", 0, "index"), 7)
    return ppl(TINY / "llama2_spm", tmp, "--plan", str(p)), p


@case("plan", "made for another model (fingerprint)")
def _(tmp, model):
    p = plan_for_tiny(tmp, DPTQ, make_trace(tmp))
    edit_json(p, "model_fingerprint", "f" * 64)
    return ppl(TINY / "llama2_spm", tmp, "--plan", str(p)), p


@case("plan", "clip value is not finite (1e999)")
def _(tmp, model):
    p = plan_for_tiny(tmp, DPTQ, make_trace(tmp))
    text = p.read_text()
    j = json.loads(text)
    old = json.dumps(j["quantizer"]["act_clip_4bit"])
    p.write_text(text.replace('"act_clip_4bit": ' + old, '"act_clip_4bit": 1e999', 1))
    return ppl(TINY / "llama2_spm", tmp, "--plan", str(p)), p


@case("plan", "a directory instead of the file")
def _(tmp, model):
    p = tmp / "dir.plan.json"
    p.mkdir()
    return ppl(TINY / "llama2_spm", tmp, "--plan", str(p)), p


# Traces
def make_trace(tmp):
    out = tmp / "t.h5"
    if not out.exists():
        subprocess.run([DPTQ, "profile", str(TINY / "llama2_spm"), "--samples", "2", "--seqlen", "16", "--topk", "4",
                        "--out", str(out)], check=True, capture_output=True)
    return out


@case("trace", "truncated (half the file)")
def _(tmp, model):
    t = make_trace(tmp)
    p = truncate_copy(t, tmp / "cut.h5", os.path.getsize(t) // 2)
    return ["report", str(p)], p


@case("trace", "not an HDF5 file")
def _(tmp, model):
    p = tmp / "text.h5"
    p.write_text("this is not HDF5\n")
    return ["report", str(p)], p


@case("trace", "unknown format version 9.0")
def _(tmp, model):
    import h5py
    p = make_trace(tmp)
    import numpy as np
    with h5py.File(p, "r+") as f:
        f.attrs["version"] = np.bytes_("9.0")   # fixed-length, as the writer stores strings
    return ["plan", str(p), "--budget", "1", "--out", str(tmp / "x.plan.json")], p


@case("trace", "format 1.x (variable-length strings): refused, names trace-upgrade")
def _(tmp, model):
    import h5py
    p = make_trace(tmp)
    with h5py.File(p, "r+") as f:
        f.attrs["format"] = "dptq-trace"   # h5py stores str as a variable-length string
        f.attrs["version"] = "1.1"
    return ["report", str(p)], p


for _name, _what in [("h5hg_read_segv", "SEGV"), ("h5hg_global_heap_loop_1", "endless loop")]:
    regression("trace", f"global heap that made HDF5 1.10 {_what} (fuzz_trace; refused before any string read)",
               f"trace/{_name}.h5", "report")

    @case("trace-upgrade", f"the same file converted: HDF5 {_what} contained in a child process")
    def _(tmp, model, _name=_name):
        p = ROOT / "fuzz" / "regressions" / "trace" / f"{_name}.h5"
        return ["trace-upgrade", str(p), "--out", str(tmp / "up.h5"), "--timeout", "10"], p


regression("trace", "object header that makes HDF5 1.10 read past a buffer (fuzz_trace; read in a child process)", "trace/h5o_attr_message_overflow.h5", "report")


regression("trace", "object header that makes HDF5 1.10 segfault (fuzz_trace; the reading child dies, dptq does not)", "trace/h5o_attr_exists_segv.h5", "report")


regression("trace", "corrupt string data (a fuzz_trace leak, fixed)", "trace/vlen_read_leak.h5", "report")


regression("trace", "a header asking for 1.4 PB (a fuzz_trace crash under ASan, fixed)", "trace/huge_allocation.h5", "report")


@case("trace", "missing file")
def _(tmp, model):
    p = tmp / "nope.h5"
    return ["report", str(p)], p


@case("trace", "a block metric stored as integers (wrong dtype)")
def _(tmp, model):
    import h5py
    import numpy as np
    p = make_trace(tmp)
    with h5py.File(p, "r+") as f:
        n = f["blocks/jump_ratio/p99"].shape
        del f["blocks/jump_ratio/p99"]
        f.create_dataset("blocks/jump_ratio/p99", data=np.zeros(n, dtype=np.int64))
    return ["plan", str(p), "--budget", "1", "--out", str(tmp / "x.plan.json")], p


@case("trace", "a per-block dataset one block short (wrong shape)")
def _(tmp, model):
    import h5py
    p = make_trace(tmp)
    with h5py.File(p, "r+") as f:
        v = f["blocks/hsnr4_db/p1"][...]
        del f["blocks/hsnr4_db/p1"]
        f.create_dataset("blocks/hsnr4_db/p1", data=v[:-1])
    return ["report", str(p)], p


# Arguments and text
@case("plan command", "manual block out of range (--blocks 99)")
def _(tmp, model):
    p = make_trace(tmp)
    return ["plan", str(p), "--policy", "manual", "--blocks", "99", "--out", str(tmp / "x.plan.json")], "99"


@case("text", "not UTF-8")
def _(tmp, model):
    p = tmp / "latin1.txt"
    p.write_bytes(b"caf\xe9 " * 400)
    return ["ppl", str(TINY / "llama2_spm"), "--text", str(p), "--seqlen", "32"], p


@case("text", "empty file")
def _(tmp, model):
    p = tmp / "empty.txt"
    p.write_bytes(b"")
    return ["ppl", str(TINY / "llama2_spm"), "--text", str(p), "--seqlen", "32"], p


@case("text", "a directory instead of the file")
def _(tmp, model):
    p = tmp / "text_dir"
    p.mkdir()
    return ["ppl", str(TINY / "llama2_spm"), "--text", str(p), "--seqlen", "32"], p


@case("ppl command", "--seqlen 0")
def _(tmp, model):
    return ["ppl", str(TINY / "llama2_spm"), "--text", str(text_file(tmp)), "--seqlen", "0"], "--seqlen"


@case("ppl command", "unknown --method")
def _(tmp, model):
    return ppl(TINY / "llama2_spm", tmp, "--method", "int3-magic"), "int3-magic"


# Outputs
@case("output", "trace into a path under a regular file (unwritable)")
def _(tmp, model):
    f = tmp / "afile"
    f.write_text("x")
    return ["profile", str(TINY / "llama2_spm"), "--samples", "1", "--seqlen", "8", "--out", str(f / "t.h5")], f / "t.h5"


@case("output", "plan into a missing folder")
def _(tmp, model):
    p = tmp / "no" / "such" / "x.plan.json"
    return ["plan", str(make_trace(tmp)), "--policy", "first-last", "--budget", "1", "--out", str(p)], p


@case("output", "quantize into an existing folder")
def _(tmp, model):
    p = tmp / "exists"
    p.mkdir()
    return ["quantize", str(TINY / "llama2_spm"), "--method", "rtn", "--out", str(p)], p


# Quantized checkpoints
def checkpoint(tmp):
    out = tmp / "ckpt"
    subprocess.run([DPTQ, "quantize", str(TINY / "llama2_spm"), "--method", "rtn", "--out", str(out)],
                   check=True, capture_output=True)
    return out


@case("checkpoint", "quant_config.json truncated")
def _(tmp, model):
    c = checkpoint(tmp)
    p = c / "quant_config.json"
    p.write_text(p.read_text()[:300])
    return ["info", str(c)], p


@case("checkpoint", "unknown checkpoint version 7.0")
def _(tmp, model):
    c = checkpoint(tmp)
    p = c / "quant_config.json"
    edit_json(p, "version", "7.0")
    return ["info", str(c)], p


@case("checkpoint", "packed weights truncated")
def _(tmp, model):
    c = checkpoint(tmp)
    p = c / "model.safetensors"
    with open(p, "r+b") as f:
        f.truncate(os.path.getsize(p) - 1000)
    return ppl(c, tmp), p


# ---------------------------------------------------------------- zero-shot task data
def zeroshot(tmp, *args):
    return ["zeroshot", str(TINY / "llama2_spm"), "--data", str(tmp / "zs"), *args]


@case("zero-shot data", "missing task folder")
def _(tmp, model):
    (tmp / "zs").mkdir()
    return zeroshot(tmp, "--tasks", "piqa"), tmp / "zs" / "piqa"


@case("zero-shot data", "malformed JSONL line (names file and line)")
def _(tmp, model):
    d = tmp / "zs" / "piqa"
    d.mkdir(parents=True)
    (d / "valid.jsonl").write_text('{"goal": "g", "sol1": "a", "sol2": "b"}\n{"goal": "g", "sol1": \n')
    (d / "valid-labels.lst").write_text("0\n1\n")
    return zeroshot(tmp, "--tasks", "piqa"), "valid.jsonl: line 2"


@case("zero-shot data", "unknown task name")
def _(tmp, model):
    (tmp / "zs").mkdir()
    return zeroshot(tmp, "--tasks", "piqa,trivia"), "unknown task 'trivia'"


@case("zero-shot data", "truncated HellaSwag bzip2 file")
def _(tmp, model):
    d = tmp / "zs" / "hellaswag"
    d.mkdir(parents=True)
    src = ROOT.parent / "shared" / "data" / "zeroshot" / "hellaswag" / "hellaswag_val_full.txt.bz2"
    data = src.read_bytes()[:5000] if src.exists() else b"BZh91AY&SY" + bytes(100)
    (d / "hellaswag_val_full.txt.bz2").write_bytes(data)
    return zeroshot(tmp, "--tasks", "hellaswag"), d / "hellaswag_val_full.txt.bz2"


# ---------------------------------------------------------------- runner
DPTQ = None


def run_case(reader, what, fn, model, timeout):
    needs_model = reader == "GGUF" and "fuzz" not in what
    if needs_model and not model:
        return {"reader": reader, "what": what, "status": "skipped (no default model)"}
    with tempfile.TemporaryDirectory(prefix="dptq-bad-") as t:
        tmp = pathlib.Path(t)
        args, must_name = fn(tmp, model)
        try:
            r = subprocess.run([DPTQ, *args], capture_output=True, text=True, errors="replace", timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"reader": reader, "what": what, "status": "FAIL: timed out", "line": ""}
        errors = [l for l in r.stderr.splitlines() if "error" in l.lower()]
        line = errors[0] if len(errors) == 1 else ""
        problems = []
        if r.returncode != 2:
            problems.append(f"exit {r.returncode}")
        if len(errors) != 1:
            problems.append(f"{len(errors)} error lines")
        # Besides the error, stderr may hold progress lines ("[ppl] ...") and nothing else.
        stray = [l for l in r.stderr.splitlines() if l.strip() and not l.startswith("[") and l not in errors]
        if stray:
            problems.append("other output on stderr: " + stray[0][:120])
        if line and str(must_name) not in line:
            problems.append(f"does not name {must_name}")
        if r.returncode < 0 or "Sanitizer" in r.stderr or "terminate called" in r.stderr:
            problems.append("crashed")
        line = line.replace(str(tmp), "$TMP")
        status = "ok" if not problems else "FAIL: " + ", ".join(problems) + " | stderr: " + r.stderr.strip()[-400:]
        return {"reader": reader, "what": what, "cmd": args[0], "status": status, "line": line}


def main():
    global DPTQ
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dptq")
    ap.add_argument("--model", default=os.path.expanduser("~/.cache/dptq/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--markdown", action="store_true", help="print the docs/robustness.md table")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("-k", help="only cases whose description contains this")
    a = ap.parse_args()
    DPTQ = a.dptq
    model = a.model if os.path.exists(a.model) else None
    results = []
    for reader, what, fn in CASES:
        if a.k and a.k not in what and a.k not in reader:
            continue
        r = run_case(reader, what, fn, model, a.timeout)
        results.append(r)
        if not a.markdown:
            print(f"[{r['status'][:4]:4}] {reader:16} {what}" + ("" if r["status"] == "ok" else "\n       " + r["status"]))
    failed = [r for r in results if r["status"].startswith("FAIL")]
    if a.markdown:
        print("| # | reader | bad input | command | exit 2, one line: the message |")
        print("|---|---|---|---|---|")
        for i, r in enumerate(results, 1):
            msg = r.get("line", "").replace("|", "\\|") if r["status"] == "ok" else r["status"].replace("|", "\\|")
            print(f"| {i} | {r['reader']} | {r['what']} | `dptq {r.get('cmd', '')}` | `{msg}` |")
    print(f"bad_inputs: {len(results) - len(failed)} of {len(results)} cases behave"
          f" ({sum(r['status'].startswith('skipped') for r in results)} skipped)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
