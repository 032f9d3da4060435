#!/usr/bin/env python3
"""Re-derives PIQA's acc and acc_norm from `dptq zeroshot --tasks piqa --per-item ITEMS.json`.

    python3 tools/piqa_norm_check.py ITEMS.json [../shared/data/zeroshot]

acc picks the choice with the highest log-likelihood; acc_norm divides each by the length of the
choice in characters (lm-eval's convention, docs/zeroshot.md). Prints both counts and how many
items the two rules answer differently — the check behind docs/results.md §7's remark that PIQA's
acc equals its acc_norm on the full set by coincidence.
"""
import json
import sys

items = json.load(open(sys.argv[1]))["tasks"]["piqa"]["items"]
data = sys.argv[2] if len(sys.argv) > 2 else "../shared/data/zeroshot"
rows = [json.loads(line) for line in open(f"{data}/piqa/valid.jsonl")]
acc = acc_norm = differ = 0
for it in items:
    ll, doc = it["ll"], rows[it["index"]]
    lengths = [len(doc["sol1"]), len(doc["sol2"])]
    a = max(range(2), key=lambda i: ll[i])
    n = max(range(2), key=lambda i: ll[i] / lengths[i])
    acc += a == it["gold"]
    acc_norm += n == it["gold"]
    differ += a != n
print(f"piqa: {len(items)} items, acc {acc} ({acc / len(items):.4f}), acc_norm {acc_norm} "
      f"({acc_norm / len(items):.4f}), the two rules answer differently on {differ}")
