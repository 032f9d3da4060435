#!/usr/bin/env python3
"""Markdown tables of the zero-shot results of scripts/results.sh step 6 (docs/results.md).

    python3 tools/zeroshot_table.py docs/data/results/zeroshot TAG     (TAG: all, or lN for --limit N)

Accuracy table: acc_norm where the task reports it (PIQA, ARC, HellaSwag), else acc; LAMBADA also
its perplexity; the average over the seven tasks as QuaRot tabulates it. Time table: seconds of
scoring per task (model loading and quantization excluded).
"""
import json, pathlib, sys

ORDER = ["fp", "rtn", "quarot-rtn", "quarot-gptq", "quarot-rtn_first-last_k4", "quarot-rtn_dynamicptq_k4",
         "quarot-rtn_first-last_k8", "quarot-rtn_dynamicptq_k8"]
TASKS = ["piqa", "arc_easy", "arc_challenge", "winogrande", "lambada", "boolq", "hellaswag"]


def main():
    root, tag = pathlib.Path(sys.argv[1]), sys.argv[2]
    rows = [(n, json.loads((root / f"{n}_{tag}.json").read_text())) for n in ORDER if (root / f"{n}_{tag}.json").exists()]
    if not rows:
        sys.exit(f"zeroshot_table: no {root}/*_{tag}.json")
    n = {t: rows[0][1]["tasks"][t]["n"] for t in TASKS if t in rows[0][1]["tasks"]}
    print("| configuration | " + " | ".join(f"{t} ({'acc_norm' if rows[0][1]['tasks'][t]['acc_norm'] is not None else 'acc'}, n={n[t]})" for t in n)
          + " | lambada ppl | average |")
    print("|---" * (len(n) + 3) + "|")
    for name, d in rows:
        cells = [f"{100 * d['tasks'][t]['headline']:.1f}" for t in n]
        ppl = d["tasks"].get("lambada", {}).get("ppl")
        print(f"| {name} | " + " | ".join(cells) + f" | {ppl:.2f} | **{100 * d['average']:.2f}** |" if ppl else " | - |")
    print()
    print("| configuration | " + " | ".join(n) + " | total |")
    print("|---" * (len(n) + 2) + "|")
    for name, d in rows:
        secs = [d["tasks"][t]["seconds"] for t in n]
        print(f"| {name} | " + " | ".join(f"{s:.0f} s" for s in secs) + f" | {sum(secs) / 60:.1f} min |")


if __name__ == "__main__":
    main()
