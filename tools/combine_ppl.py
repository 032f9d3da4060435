#!/usr/bin/env python3
"""Combine slices of one perplexity run into the result of the whole run.

    python3 tools/combine_ppl.py OUT.json SLICE.json [SLICE.json ...]

Each SLICE is the `--json` output of `dptq ppl ... --first-window F --max-windows N` on the same
model, text, seqlen, method and plan. Perplexity is exp(total NLL / predicted tokens), so the
slices' `nll_sum` and `predicted` add up to exactly what one `dptq ppl` over all their windows
reports (up to the order of a double sum: ~1e-15 relative). The slices must cover windows
0 .. W-1 of the text without gap or overlap, where W = text_tokens // seqlen (the whole file).

Writes OUT atomically (temporary file, then rename). Bad input: one line on stderr, exit code 2.
"""
import math
import os
import sys

from slice_io import Tool

SAME = ("model", "text", "seqlen", "text_tokens", "method", "plan", "quantization")
TOOL = Tool("combine_ppl")
fail = TOOL.fail


def load(path):
    d = TOOL.load(path)
    for key in SAME + ("nll_sum", "predicted", "tokens", "windows", "first_window", "seconds"):
        if key not in d:
            fail(f"{path}: no '{key}' (not the output of `dptq ppl --json` with --first-window support)")
    if not (isinstance(d["nll_sum"], (int, float)) and math.isfinite(d["nll_sum"])):
        fail(f"{path}: nll_sum is not a finite number")
    return d


def combine(paths):
    slices = sorted(((load(p), p) for p in paths), key=lambda s: s[0]["first_window"])
    first, first_path = slices[0]
    for d, p in slices[1:]:
        for key in SAME:
            if d[key] != first[key]:
                fail(f"{p}: {key} is {d[key]!r}, but {first_path} has {first[key]!r}")
    expect = 0
    for d, p in slices:
        if d["first_window"] != expect:
            what = "overlaps the previous slice" if d["first_window"] < expect else f"leaves windows {expect}..{d['first_window'] - 1} out"
            fail(f"{p}: starts at window {d['first_window']}, {what}")
        if d["predicted"] != d["windows"] * (d["seqlen"] - 1):
            fail(f"{p}: predicted {d['predicted']} != windows {d['windows']} x (seqlen - 1)")
        expect += d["windows"]
    total = first["text_tokens"] // first["seqlen"]
    if expect != total:
        fail(f"{slices[-1][1]}: the slices end at window {expect - 1}, the text has {total} windows")
    nll = math.fsum(d["nll_sum"] for d, _ in slices)
    predicted = sum(d["predicted"] for d, _ in slices)
    seconds = sum(d["seconds"] for d, _ in slices)
    out = {key: first[key] for key in SAME}
    out.update({
        "ppl": math.exp(nll / predicted),
        "nll_mean": nll / predicted,
        "nll_sum": nll,
        "tokens": sum(d["tokens"] for d, _ in slices),
        "predicted": predicted,
        "windows": expect,
        "first_window": 0,
        "seconds": seconds,
        "tokens_per_s": sum(d["tokens"] for d, _ in slices) / seconds if seconds > 0 else 0,
        "slices": [{"file": os.path.basename(p), "first_window": d["first_window"], "windows": d["windows"],
                    "ppl": d["ppl"], "seconds": d["seconds"]} for d, p in slices],
    })
    return out


def main(argv):
    if len(argv) < 3:
        fail("usage: combine_ppl.py OUT.json SLICE.json [SLICE.json ...]")
    out = combine(argv[2:])
    TOOL.write(argv[1], out)  # two workers may finish the same cell at once
    print(f"{argv[1]}: ppl {out['ppl']:.4f} over {out['windows']} windows from {len(argv) - 2} slices")


if __name__ == "__main__":
    main(sys.argv)
