#!/usr/bin/env python3
"""Markdown tables for docs/results.md §6 from the files scripts/sensitivity.sh writes.

    python3 tools/sensitivity_table.py [docs/data/sensitivity]

Prints, for each measurement (method x text): the base and FP NLL, the blocks by measured gain,
the Spearman / Kendall / permutation p of the dynamics scores and of the strongest metrics; the
agreement between the calibration and the WikiText-2 measurements of the same method; and the
perplexity of the plans made from the calibration trace (dynamicptq, measured, site-level) next
to the earlier dynamicptq-jr / first-last / random rows on the same windows. Only reads files;
every number comes from a `dptq ... --json` output.
"""
import json
import os
import sys

DIR = sys.argv[1] if len(sys.argv) > 1 else "docs/data/sensitivity"
OLD = "docs/data/results"
NAMES = {"quarot-rtn": "QuaRot-RTN", "quarot-gptq": "QuaRot-GPTQ"}
SCORES = ("score/injected-noise", "score/site-nsr", "score/hsnr-mlp-max")


def load(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def ranks(v):
    order = sorted(range(len(v)), key=lambda i: v[i])
    r = [0.0] * len(v)
    i = 0
    while i < len(v):
        j = i
        while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return r


def spearman(a, b):
    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    sab = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    saa = sum((x - ma) ** 2 for x in ra)
    sbb = sum((y - mb) ** 2 for y in rb)
    return sab / (saa * sbb) ** 0.5


def measurement(name):
    m, p = load(os.path.join(DIR, name + ".json")), load(os.path.join(DIR, name + ".proxies.json"))
    return (m, p) if m and p else (None, None)


def main():
    names = [("quarot-rtn", "builtin_8x512"), ("quarot-rtn", "wikitext_8x2048"),
             ("quarot-gptq", "builtin_8x512"), ("quarot-gptq", "wikitext_8x2048")]
    print("| method | text | windows × tokens | sites | mean NLL FP / W4A4KV4 | top blocks by measured gain "
          "(nats/token) | minutes |")
    print("|---|---|---|---|---|---|---|")
    got = {}
    for method, text in names:
        m, p = measurement(f"{method}_{text}")
        if not m:
            continue
        got[(method, text)] = (m, p)
        top = ", ".join(f"{b} ({m['blocks'][b]['nll_gain']:+.3f})" for b in m["ranking"][:5])
        sites = "yes" if "sites" in m["blocks"][0] else "no"
        src = "built-in corpus" if m["text"] == "builtin" else "WikiText-2 test"
        print(f"| {NAMES[method]} | {src} ({m['window_mode']}) | {m['windows']} × {m['seqlen']} | {sites} | "
              f"{m['fp_nll']:.3f} / {m['base_nll']:.3f} | {top} | {m['seconds'] / 60:.0f} |")

    print("\nRank correlation of the dynamics scores (and the strongest metrics) with the measured NLL gain "
          "over the 30 blocks; p = two-sided permutation p-value (10,000 shuffles), p×n = Bonferroni over "
          "every metric screened:\n")
    print("| method | text | metric | Spearman | p | Kendall | p×n |")
    print("|---|---|---|---|---|---|---|")
    for (method, text), (m, p) in got.items():
        rows = {r["metric"]: r for r in p["metrics"]}
        show = [s for s in SCORES if s in rows]
        show += [r["metric"] for r in p["metrics"][:3] if r["metric"] not in show]
        for name in show:
            r = rows[name]
            mark = " (dynamicptq)" if name == p.get("default_score") else ""
            print(f"| {NAMES[method]} | {text} | `{name}`{mark} | {r['spearman']:+.3f} | {r['p_spearman']:.4f} | "
                  f"{r['kendall']:+.3f} | {r['p_bonferroni']:.3f} |")

    print("\nDoes a calibration measurement carry over to WikiText-2? Spearman between the two measured "
          "gain vectors of the same method:\n")
    for method in ("quarot-rtn", "quarot-gptq"):
        a, b = got.get((method, "builtin_8x512")), got.get((method, "wikitext_8x2048"))
        if a and b:
            ga = [x["nll_gain"] for x in a[0]["blocks"]]
            gb = [x["nll_gain"] for x in b[0]["blocks"]]
            print(f"- {NAMES[method]}: Spearman(calibration gain, WikiText-2 gain) = {spearman(ga, gb):+.3f}")

    print("\nHow noisy are the measured gains themselves? Per measurement: the blocks' variance of the gain, "
          "the mean squared standard error of a block's gain over the windows, the reliability "
          "1 − mean(SE²) / variance and its square root, the correlation a perfect score could reach "
          "against a measurement this noisy (a rough figure: the SE treats each block alone, while the "
          "blocks share windows, so differences between blocks are less noisy than this says):\n")
    print("| method | text | variance of gains | mean SE² | reliability | √reliability |")
    print("|---|---|---|---|---|---|")
    for (method, text), (m, _) in got.items():
        g = [b["nll_gain"] for b in m["blocks"]]
        se2 = sum(b["nll_gain_se"] ** 2 for b in m["blocks"]) / len(g)
        mean = sum(g) / len(g)
        var = sum((x - mean) ** 2 for x in g) / (len(g) - 1)
        rel = 1 - se2 / var
        print(f"| {NAMES[method]} | {text} | {var:.2e} | {se2:.2e} | {rel:+.2f} | "
              f"{(rel ** 0.5 if rel > 0 else 0):.2f} |")

    print("\nPerplexity, WikiText-2 test, first 8 windows × 2048 tokens (the windows of §5's sweeps); "
          "plans from the calibration trace only:\n")
    budgets = (0, 1, 2, 4, 8)
    print("| method | policy | " + " | ".join(f"k={b}" for b in budgets) + " | source |")
    print("|---|---|" + "---|" * len(budgets) + "---|")
    for method in ("quarot-rtn", "quarot-gptq"):
        new = load(os.path.join(DIR, f"sweep_{method}_new.json"))
        base = load(os.path.join(DIR, f"sweep_{method}_baselines.json"))
        old = load(os.path.join(OLD, f"sweep_{method}.json"))
        for data, label in ((new, "this build, `sweep_%s_new.json`" % method),
                            (base, "this build, `sweep_%s_baselines.json`" % method),
                            (old, "§5 (an earlier build), `sweep_%s.json`" % method)):
            if not data:
                continue
            pols = []
            for r in data["rows"]:
                if r["policy"] not in pols:
                    pols.append(r["policy"])
            for pol in pols:
                cells = []
                for b in budgets:
                    r = next((r for r in data["rows"] if r["policy"] == pol and r["budget"] == b), None)
                    cells.append(f"{r['ppl']:.2f}" if r else "")
                shown = "dynamicptq-jr" if data is old and pol == "dynamicptq" else pol
                print(f"| {NAMES[method]} | {shown} | " + " | ".join(cells) + f" | {label} |")
    for method in ("quarot-rtn",):
        for pol in ("dynamicptq", "measured"):
            r = load(os.path.join(DIR, f"site_{method}_{pol}.json"))
            plan = load(os.path.join(DIR, f"site_{method}_{pol}.plan.json"))
            if r and plan:
                sites = sum(1 for b in plan["blocks"] for s in ("qkv", "o", "gate_up", "down") if b["bits"][s] == 8)
                print(f"\nSite-level {pol} plan, {NAMES[method]}, MAC share ≤ 4/30: {sites} sites at 8 bits in "
                      f"{sum(1 for b in plan['blocks'] if b['selected'])} blocks, perplexity **{r['ppl']:.2f}** "
                      f"(`site_{method}_{pol}.json`).")
    new = load(os.path.join(DIR, "sweep_quarot-rtn_new.json"))
    if new:
        print("\nBlocks the new plans selected (QuaRot-RTN):\n")
        print("| policy | k | blocks |\n|---|---|---|")
        for r in new["rows"]:
            if r["budget"] > 0:
                print(f"| {r['policy']} | {r['budget']} | {r['blocks']} |")


if __name__ == "__main__":
    main()
