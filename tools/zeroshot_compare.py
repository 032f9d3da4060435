#!/usr/bin/env python3
"""Compares `dptq zeroshot --per-item` with tools/golden/zeroshot_reference.py on the same items
(issue 14, acceptance 1: accuracies within 0.5 points per task on >= 500 items, per-item
log-likelihoods within 1e-3). Prints a markdown table; exit 1 when a bound is broken.

    python3 tools/zeroshot_compare.py REFERENCE.json DPTQ_PER_ITEM.json
"""
import json, sys


def main():
    ref, ours = (json.load(open(p)) for p in sys.argv[1:3])
    ok = True
    print("| task | items | acc dptq | acc reference | Δ points | acc_norm dptq | acc_norm reference | Δ points "
          "| max \\|Δll\\| | mean \\|Δll\\| | items with another prediction |")
    print("|---" * 11 + "|")
    for task, r in ref["tasks"].items():
        o = ours["tasks"].get(task)
        if o is None:
            continue
        n = min(len(r["items"]), len(o["items"]))
        diffs, other = [], 0
        for ri, oi in zip(r["items"][:n], o["items"][:n]):
            assert ri["gold"] == oi["gold"], (task, ri["index"])
            diffs += [abs(a - b) for a, b in zip(ri["ll"], oi["ll"])]
            if len(ri["ll"]) > 1:
                other += max(range(len(ri["ll"])), key=lambda c: (ri["ll"][c], -c)) != max(range(len(oi["ll"])), key=lambda c: (oi["ll"][c], -c))
            else:
                other += ri["greedy"][0] != oi["greedy"][0]
        d_acc = 100 * (o["acc"] - r["acc"])
        norm = r.get("acc_norm") is not None
        d_norm = 100 * (o["acc_norm"] - r["acc_norm"]) if norm else 0.0
        ok &= abs(d_acc) <= 0.5 and abs(d_norm) <= 0.5 and max(diffs) <= 1e-3 and n >= min(500, len(r["items"]))
        fmt = lambda v: "-" if v is None else f"{100 * v:.2f}"
        print(f"| {task} | {n} | {fmt(o['acc'])} | {fmt(r['acc'])} | {d_acc:+.2f} | {fmt(o.get('acc_norm'))} | "
              f"{fmt(r.get('acc_norm'))} | {d_norm:+.2f} | {max(diffs):.1e} | {sum(diffs) / len(diffs):.1e} | {other} |")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
