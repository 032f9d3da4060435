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


def load(root, name, tag):
    """NAME_TAG.json (all tasks in one file), else the per-task files NAME_TASK_TAG.json merged;
    the average only when all seven tasks are there."""
    whole = root / f"{name}_{tag}.json"
    if whole.exists():
        return json.loads(whole.read_text())
    tasks = {}
    for t in TASKS:
        f = root / f"{name}_{t}_{tag}.json"
        if f.exists():
            tasks[t] = json.loads(f.read_text())["tasks"][t]
    if not tasks:
        return None
    avg = sum(v["headline"] for v in tasks.values()) / len(tasks) if len(tasks) == len(TASKS) else None
    return {"tasks": tasks, "average": avg}


def main():
    root, tag = pathlib.Path(sys.argv[1]), sys.argv[2]
    rows = [(n, d) for n in ORDER if (d := load(root, n, tag))]
    if not rows:
        sys.exit(f"zeroshot_table: no {root}/*_{tag}.json")
    first = {t: d["tasks"][t] for _, d in rows for t in TASKS if t in d["tasks"]}
    n = {t: first[t]["n"] for t in TASKS if t in first}
    print("| configuration | " + " | ".join(f"{t} ({'acc_norm' if first[t]['acc_norm'] is not None else 'acc'}, n={n[t]})" for t in n)
          + " | lambada ppl | average |")
    print("|---" * (len(n) + 3) + "|")
    for name, d in rows:
        cells = [f"{100 * d['tasks'][t]['headline']:.1f}" if t in d["tasks"] else "–" for t in n]
        ppl = d["tasks"].get("lambada", {}).get("ppl")
        avg = f"**{100 * d['average']:.2f}**" if d["average"] is not None else "–"
        print(f"| {name} | " + " | ".join(cells) + f" | {f'{ppl:.2f}' if ppl else '–'} | {avg} |")
    print()
    print("| configuration | " + " | ".join(n) + " | total |")
    print("|---" * (len(n) + 2) + "|")
    for name, d in rows:
        secs = [d["tasks"][t]["seconds"] if t in d["tasks"] else None for t in n]
        print(f"| {name} | " + " | ".join(f"{s:.0f} s" if s is not None else "–" for s in secs)
              + f" | {sum(s for s in secs if s is not None) / 60:.1f} min |")


if __name__ == "__main__":
    main()
