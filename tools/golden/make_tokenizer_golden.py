#!/usr/bin/env python3
"""Golden token ids of the default model's tokenizer (SmolLM2-135M-Instruct, byte-level BPE from
GGUF metadata) from an independent reference, for tests/test_tokenizer.cpp.

Run (from the repository root; the reference venv is made by scripts/setup.sh, nothing is
downloaded):

    HF_HUB_OFFLINE=1 ~/.cache/dptq/refvenv/bin/python tools/golden/make_tokenizer_golden.py \
        [--model ~/.cache/dptq/models/SmolLM2-135M-Instruct.Q4_1.gguf] \
        [--text ../shared/data/wikitext-2-raw-test.txt] [--out tests/golden/tokenizer_smollm2_wikitext.json]

Reference. The HF `tokenizers` library, built from the GGUF's vocabulary, merges and control tokens
(token_type 3, added as special tokens) with exactly the pipeline of SmolLM2's original
tokenizer.json: pre_tokenizer Sequence[Digits(individual_digits=True),
ByteLevel(add_prefix_space=False, use_regex=True)], BPE model (no dropout, no unk, no affixes),
ByteLevel decoder, no BOS (tokenizer.ggml.add_bos_token = false).

Cross-check against transformers' own GGUF loading (AutoTokenizer.from_pretrained(dir,
gguf_file=...)), result with tokenizers 0.23.3 / transformers 5.18.0:
    THEY DISAGREE on WikiText-2 test: 304,978 ids (reference) vs 304,986 (transformers), in 10 places.
transformers maps tokenizer.ggml.pre = "smollm" to nothing and keeps GPT2Tokenizer's plain
ByteLevel regex, i.e. it never splits digits off first. The difference shows wherever whitespace
precedes a number: " \\n\\n\\n 1" is " \\n\\n\\n " + "1" for the original definition (tokens "ĠĊĊ",
"ĊĠ", "1") but " \\n\\n\\n" + " 1" for transformers ("Ġ", "ĊĊĊ", "Ġ", "1"); likewise " ½" ("Ġ", "Â½"
vs "ĠÂ", "½"). The reference above follows the original tokenizer.json (Digits split individually,
then byte-level BPE), which is also what llama.cpp's `smollm` pre-tokenizer implements (regexes
"\\p{N}" then the GPT-2 pattern, read from its source; llama.cpp is not run here), so it is the
truth the golden stores; transformers' GGUF conversion is wrong for this model (DESIGN.md §9).
Takes about 20 s (most of it loading transformers).

Output (format "dptq-tokenizer-golden" 1.0.0):
    wikitext.count / ids_sha256      number of ids and sha256 of the ids as little-endian int32
    wikitext.block_size / block_sha256   sha256 of each consecutive block of ids (the last one may
                                     be shorter), so a failing test can point at the first bad block
    wikitext.first / last            the first and last 64 ids
    wikitext.text_sha256             the text these ids belong to
    transformers_gguf                the cross-check above, measured on this run
    cases[i].text / ids              short texts (digits, contractions, whitespace, unicode, special
                                     tokens, empty) with reference ids; round_trip tells whether
                                     decode(ids) gives the text back (bytes missing from the
                                     vocabulary are dropped, as HF does)
"""
import argparse
import bisect
import hashlib
import json
import os
import pathlib
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from gguf import GGUFReader  # noqa: E402
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers  # noqa: E402
from transformers.convert_slow_tokenizer import bytes_to_unicode  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
CACHE = pathlib.Path(os.environ.get("DPTQ_CACHE", pathlib.Path.home() / ".cache/dptq"))
DEFAULT_MODEL = CACHE / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_TEXT = ROOT.parent / "shared" / "data" / "wikitext-2-raw-test.txt"
DEFAULT_OUT = ROOT / "tests" / "golden" / "tokenizer_smollm2_wikitext.json"
BLOCK = 16384
EDGE = 64

CASES = [
    "",
    "Hello world",
    "The year 1996 had 365 days; pi is 3.14159.",
    "a  1",
    "x   12 y",
    " 2024",
    "abc123def",
    "12345678901234567890",
    "don't I'll we've they're she's he'd I'm",
    "DON'T WE'LL 'S",
    "a\n\nb",
    "  leading spaces",
    "trailing spaces   ",
    "tab\there\t\tand",
    "\n \n  \n",
    "a \n b",
    "line1\r\nline2",
    " " * 40 + "x",
    "naïve café — “quotes” and ‘single’",
    "日本語のテキスト、中文文本。",
    "emoji 😀👍🏽 family 👨‍👩‍👧 flag 🇫🇷",
    "Roman Ⅻ, half ½, Arabic-Indic ٣٤ digits",
    "combining e\u0301, NEL a\u0085b, nbsp a\u00a0b, ideographic\u3000space",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|><|endoftext|>",
    "text<empty_output>more<repo_name> x",
    "<|im_start",
    " = Robert Boulter = \n \n Robert Boulter is an English film , television and theatre actor . "
    "He had a guest @-@ starring role on the television series The Bill in 2000 .",
    " 1 @,@ 000 km @-@ long , 4 ½ months",
    "control\x01char and missing\x04byte",
]


def gguf_strings(reader, key):
    field = reader.fields[key]
    return [bytes(field.parts[i]).decode("utf-8") for i in field.data]


def gguf_ints(reader, key):
    field = reader.fields[key]
    return [int(field.parts[i][0]) for i in field.data]


def gguf_scalar(reader, key):
    field = reader.fields[key]
    return field.parts[field.data[0]][0].item()


def reference_tokenizer(gguf_path):
    """SmolLM2's original tokenizer.json pipeline over the GGUF's vocabulary and merges."""
    reader = GGUFReader(str(gguf_path))
    tokens = gguf_strings(reader, "tokenizer.ggml.tokens")
    types = gguf_ints(reader, "tokenizer.ggml.token_type")
    merges = gguf_strings(reader, "tokenizer.ggml.merges")
    assert bytes(reader.fields["tokenizer.ggml.pre"].parts[-1]).decode() == "smollm"
    assert not gguf_scalar(reader, "tokenizer.ggml.add_bos_token")
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[tuple(m.split(" ")) for m in merges], dropout=None,
                               continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types) if ty == 3])
    return tok, tokens, types


def sha256_ids(ids):
    return hashlib.sha256(np.asarray(ids, dtype="<i4").tobytes()).hexdigest()


def differences(a, b, byte_lengths):
    """Places where two tokenizations of the same text differ, as (i0, i1, j0, j1) index ranges
    into a and b: maximal runs of tokens of `a` whose (byte offset, id) does not occur in `b`, and
    the tokens of `b` covering the same bytes. Linear time, unlike difflib on 300k ids."""
    def starts(ids):
        out, pos = [], 0
        for i in ids:
            out.append(pos)
            pos += byte_lengths[i]
        return out
    sa, sb = starts(a), starts(b)
    in_b = set(zip(sb, b))
    total = sum(byte_lengths[t] for t in a)
    places, i = [], 0
    while i < len(a):
        if (sa[i], a[i]) in in_b:
            i += 1
            continue
        i0 = i
        while i < len(a) and (sa[i], a[i]) not in in_b:
            i += 1
        end = sa[i] if i < len(a) else total
        places.append((i0, i, bisect.bisect_right(sb, sa[i0]) - 1, bisect.bisect_left(sb, end)))
    return places


def dumps(o, indent=0):
    """JSON with every list of scalars on one line and nested containers indented."""
    pad = " " * indent
    if isinstance(o, dict):
        items = [f"{pad} {json.dumps(k)}: {dumps(v, indent + 1)}" for k, v in o.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}" if items else "{}"
    if isinstance(o, list) and o and all(isinstance(v, (list, dict)) for v in o):
        return "[\n" + ",\n".join(pad + " " + dumps(v, indent + 1) for v in o) + "\n" + pad + "]"
    return json.dumps(o, separators=(",", ":"), ensure_ascii=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=pathlib.Path, default=DEFAULT_MODEL)
    ap.add_argument("--text", type=pathlib.Path, default=DEFAULT_TEXT)
    ap.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    args = ap.parse_args()

    ref, tokens, types = reference_tokenizer(args.model)
    raw = args.text.read_bytes()
    text = raw.decode("utf-8")
    ids = ref.encode(text, add_special_tokens=False).ids
    assert ref.decode(ids, skip_special_tokens=False) == text, "reference does not round-trip"
    print(f"reference (tokenizers {tokenizers.__version__}): {len(ids)} ids", file=sys.stderr)

    from transformers import AutoTokenizer
    hf = AutoTokenizer.from_pretrained(str(args.model.parent), gguf_file=args.model.name)
    hf_ids = hf(text, add_special_tokens=False)["input_ids"]
    byte_decoder = {c: b for b, c in bytes_to_unicode().items()}
    byte_lengths = [len(t.encode("utf-8")) if ty == 3 else sum(1 for c in t if c in byte_decoder)
                    for t, ty in zip(tokens, types)]
    diffs = differences(ids, hf_ids, byte_lengths)
    agree = not diffs
    print(f"transformers {transformers.__version__} GGUF tokenizer: {len(hf_ids)} ids, "
          f"{'AGREES' if agree else f'DISAGREES in {len(diffs)} places'}", file=sys.stderr)
    examples = []
    for i0, i1, j0, j1 in diffs[:5]:
        context = ref.decode(ids[max(0, i0 - 4):i1 + 4])
        ex = {"at": i0, "context": context, "reference": [tokens[i] for i in ids[i0:i1]],
              "transformers": hf.convert_ids_to_tokens(hf_ids[j0:j1])}
        examples.append(ex)
        print(f"  at {i0}: {context!r}: reference {ex['reference']} vs transformers {ex['transformers']}",
              file=sys.stderr)

    cases = []
    case_disagreements = 0
    for s in CASES:
        case_ids = ref.encode(s, add_special_tokens=False).ids
        case_disagreements += case_ids != hf(s, add_special_tokens=False)["input_ids"]
        cases.append({"text": s, "ids": case_ids,
                      "round_trip": ref.decode(case_ids, skip_special_tokens=False) == s})
    print(f"unit cases: transformers differs on {case_disagreements} of {len(cases)}", file=sys.stderr)

    out = {
        "format": "dptq-tokenizer-golden", "version": "1.0.0",
        "generator": "tools/golden/make_tokenizer_golden.py",
        "reference": f"tokenizers {tokenizers.__version__}: SmolLM2 tokenizer.json pipeline "
                     "(Digits(individual_digits) + ByteLevel BPE) over the GGUF vocabulary and merges",
        "model": args.model.name,
        "add_bos": False,
        "wikitext": {
            "file": args.text.name,
            "text_sha256": hashlib.sha256(raw).hexdigest(),
            "count": len(ids),
            "ids_sha256": sha256_ids(ids),
            "block_size": BLOCK,
            "block_sha256": [sha256_ids(ids[i:i + BLOCK]) for i in range(0, len(ids), BLOCK)],
            "first": ids[:EDGE],
            "last": ids[-EDGE:],
        },
        "transformers_gguf": {
            "version": transformers.__version__,
            "count": len(hf_ids),
            "agrees": agree,
            "differing_places": len(diffs),
            "examples": examples,
            "verdict": "reference follows SmolLM2's tokenizer.json (digits split first); transformers' "
                       "GGUF conversion ignores tokenizer.ggml.pre = smollm and is wrong here",
        },
        "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(dumps(out) + "\n", encoding="utf-8")
    os.replace(tmp, args.out)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
