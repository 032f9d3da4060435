#!/usr/bin/env python3
"""Combine item slices of one zero-shot run into the result of the whole run.

    python3 tools/combine_zeroshot.py OUT.json SLICE.json [SLICE.json ...]

Each SLICE is the `--json` output of `dptq zeroshot ... --tasks T --first-item F --limit N` on the
same model, method, plan and task data, for one task T. The slices must cover items 0 .. n-1 of the
task without gap or overlap, and the last one must reach the end of the task file (`to_end`).

Every metric is a mean over items, so the whole run's value follows from the slices exactly:
acc and acc_norm from the count of correct items (each slice's mean x its n, rounded to an
integer), their standard errors as lm-eval computes them from the whole sample (sample standard
deviation / sqrt(n), which for 0/1 scores is sqrt(p (1 - p) / (n - 1))), and LAMBADA's perplexity
exp(-mean log-likelihood) from each slice's n x log(ppl). `seconds`, `tokens` and `forwards` add up.

OUT has the format of one `dptq zeroshot --json` run over the whole task (limit -1, first_item 0),
plus the list of slices. Written atomically (temporary file, then rename). Bad input: one line on
stderr, exit code 2.
"""
import math
import os
import sys

from slice_io import Tool

SAME = ("model", "data", "quantization", "method", "plan", "engine")
TOOL = Tool("combine_zeroshot")
fail = TOOL.fail


def load(path):
    d = TOOL.load(path)
    for key in SAME + ("tasks", "threads"):
        if key not in d:
            fail(f"{path}: no '{key}' (not the output of `dptq zeroshot --json`)")
    if not isinstance(d["tasks"], dict) or len(d["tasks"]) != 1:
        fail(f"{path}: holds {len(d['tasks']) if isinstance(d['tasks'], dict) else 'no'} tasks, a slice holds one")
    task, t = next(iter(d["tasks"].items()))
    for key in ("n", "first_item", "to_end", "acc", "headline", "seconds", "tokens", "forwards"):
        if key not in t:
            fail(f"{path}: task {task} has no '{key}' (not the output of `dptq zeroshot --json` with --first-item support)")
    if not (isinstance(t["n"], int) and t["n"] > 0):
        fail(f"{path}: task {task} has n = {t['n']!r}")
    return task, t, d


def count(mean, n, path, what):
    """The number of correct items behind a mean over n 0/1 scores."""
    k = round(mean * n)
    if abs(k - mean * n) > 1e-6 * n:
        fail(f"{path}: {what} {mean!r} is not a count out of {n}")
    return k


def mean_stderr(k, n):
    p = k / n
    return p, (math.sqrt(p * (1 - p) / (n - 1)) if n > 1 else 0.0)


def combine(paths):
    slices = sorted((load(p) + (p,) for p in paths), key=lambda s: s[1]["first_item"])
    task, first_t, first, first_path = slices[0]
    for name, t, d, p in slices[1:]:
        if name != task:
            fail(f"{p}: task {name}, but {first_path} has task {task}")
        for key in SAME:
            if d[key] != first[key]:
                fail(f"{p}: {key} is {d[key]!r}, but {first_path} has {first[key]!r}")
    expect = 0
    for name, t, d, p in slices:
        if t["first_item"] != expect:
            what = "overlaps the previous slice" if t["first_item"] < expect else f"leaves items {expect}..{t['first_item'] - 1} out"
            fail(f"{p}: starts at item {t['first_item']}, {what}")
        expect += t["n"]
    last_t, last_path = slices[-1][1], slices[-1][3]
    if not last_t["to_end"]:
        fail(f"{last_path}: the slices end at item {expect - 1}, before the end of task {task}")
    for name, t, d, p in slices[:-1]:
        if t["to_end"]:
            fail(f"{p}: reaches the end of task {task}, but another slice follows")

    n = expect
    acc_k = sum(count(t["acc"], t["n"], p, "acc") for _, t, _, p in slices)
    out_t = {"n": n, "first_item": 0, "to_end": True}
    out_t["acc"], out_t["acc_stderr"] = mean_stderr(acc_k, n)
    has_norm = first_t.get("acc_norm") is not None
    if has_norm:
        norm_k = sum(count(t["acc_norm"], t["n"], p, "acc_norm") for _, t, _, p in slices)
        out_t["acc_norm"], out_t["acc_norm_stderr"] = mean_stderr(norm_k, n)
    else:
        out_t["acc_norm"] = out_t["acc_norm_stderr"] = None
    if first_t.get("ppl") is not None:
        for _, t, _, p in slices:
            if not (isinstance(t.get("ppl"), (int, float)) and t["ppl"] > 0 and math.isfinite(t["ppl"])):
                fail(f"{p}: ppl is {t.get('ppl')!r}, not a positive finite number")
        out_t["ppl"] = math.exp(math.fsum(t["n"] * math.log(t["ppl"]) for _, t, _, _ in slices) / n)
    else:
        out_t["ppl"] = None
    out_t["headline"] = out_t["acc_norm"] if has_norm else out_t["acc"]
    seconds = math.fsum(t["seconds"] for _, t, _, _ in slices)
    out_t["seconds"] = seconds
    out_t["items_per_s"] = n / seconds if seconds > 0 else 0.0
    out_t["tokens"] = sum(t["tokens"] for _, t, _, _ in slices)
    out_t["forwards"] = sum(t["forwards"] for _, t, _, _ in slices)
    out = {key: first[key] for key in SAME}
    out.update({"limit": -1, "first_item": 0, "threads": first["threads"], "average": out_t["headline"],
                "tasks": {task: out_t},
                "slices": [{"file": os.path.basename(p), "first_item": t["first_item"], "n": t["n"],
                            "headline": t["headline"], "seconds": t["seconds"]} for _, t, _, p in slices]})
    return out


def main(argv):
    if len(argv) < 3:
        fail("usage: combine_zeroshot.py OUT.json SLICE.json [SLICE.json ...]")
    out_path = argv[1]
    result = combine(argv[2:])
    TOOL.write(out_path, result)
    t = next(iter(result["tasks"].values()))
    print(f"{out_path}: {next(iter(result['tasks']))} {t['headline']:.4f} over {t['n']} items from {len(result['slices'])} slices")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
