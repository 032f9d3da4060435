#!/usr/bin/env python3
"""Which per-block trace metric predicts the measured benefit of 8-bit activations in that block?

    ~/.cache/dptq/refvenv/bin/python tools/proxy_screen.py \\
        traces/smollm2-135m_quarot_32x512.h5 docs/data/results/sweep_quarot-rtn-oracle.json [--top 12]

The oracle's first greedy step (`dptq sweep --policies oracle`) measures, for every block alone,
the held-out perplexity gain of switching its activations to 8 bits ("single_gain"). This script
takes every per-block scalar the trace stores (DESIGN §4, docs/trace-format.md: block statistics,
per-site kurtosis, SQNR, code entropy, token absmax, the input stream's massive magnitude) and
prints its Spearman correlation with that gain, strongest first, with a two-sided permutation
p-value (10,000 shuffles, fixed seed). It screens many metrics at once, so a small p-value is only a
lead: multiply it by the number of metrics screened (Bonferroni) before believing it.

Needs h5py and numpy (the reference venv of tools/golden has both). Reads files only.
"""
import argparse
import json
import sys

import numpy as np

try:
    import h5py
except ImportError:
    sys.exit("proxy_screen: error: needs h5py (run it with ~/.cache/dptq/refvenv/bin/python)")


def ranks(x):
    """Average ranks (ties share their mean rank), as Spearman needs."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    r[order] = np.arange(len(x), dtype=float)
    for v in np.unique(x):
        tie = x == v
        if tie.sum() > 1:
            r[tie] = r[tie].mean()
    return r


def spearman(a, b):
    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def permutation_p(a, b, rho, rng, n=10000):
    ra, rb = ranks(a), ranks(b)
    ra = (ra - ra.mean()) / ra.std()
    rb = (rb - rb.mean()) / rb.std()
    perms = np.array([rng.permutation(rb) for _ in range(n)])
    null = perms @ ra / len(ra)
    return float((np.abs(null) >= abs(rho) - 1e-12).mean())


def metrics(f, n_layers):
    """{name: [L] floats}: every per-block scalar of the trace."""
    out = {}
    for group in f["blocks"]:
        node = f["blocks"][group]
        if isinstance(node, h5py.Dataset):
            out[f"blocks/{group}"] = node[()].astype(float)
        else:
            for stat in ("mean", "p1", "p50", "p99", "max"):
                if stat in node:
                    out[f"blocks/{group}/{stat}"] = node[stat][()].astype(float)
    for site in f["sites"]:
        g = f["sites"][site]
        for name in ("kurtosis", "sqnr4_db", "code_entropy_bits"):
            out[f"sites/{site}/{name}"] = g[name][()].astype(float)
        for stat in ("mean", "p99", "max"):
            out[f"sites/{site}/token_absmax/{stat}"] = g["token_absmax"][stat][()].astype(float)
    # The block's input stream h_l (streams has L + 1 entries).
    for name in ("top1_abs", "median_abs", "ratio"):
        out[f"streams/{name} (input h_l)"] = f["streams"][name][()][:n_layers].astype(float)
    return {k: v for k, v in out.items() if len(v) == n_layers and np.isfinite(v).all() and v.std() > 0}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("trace")
    ap.add_argument("oracle_json", help="`dptq sweep --policies oracle ... --json` output")
    ap.add_argument("--top", type=int, default=12)
    a = ap.parse_args()
    try:
        with open(a.oracle_json) as fh:
            oracle = json.load(fh)["oracle"]
        gain = np.asarray(oracle["single_gain"], dtype=float)
    except (OSError, KeyError, json.JSONDecodeError) as e:
        sys.exit(f"proxy_screen: error: {a.oracle_json}: no oracle single_gain ({e})")
    try:
        f = h5py.File(a.trace, "r")
    except OSError as e:
        sys.exit(f"proxy_screen: error: {a.trace}: cannot open ({e})")
    m = metrics(f, len(gain))
    rng = np.random.default_rng(0)
    rows = []
    for name, v in m.items():
        rho = spearman(v, gain)
        rows.append((abs(rho), name, rho, permutation_p(v, gain, rho, rng)))
    rows.sort(reverse=True)
    print(f"Spearman(metric, measured single-block gain) over {len(gain)} blocks, {len(rows)} metrics screened "
          f"(trace {a.trace}, gains from {a.oracle_json}):\n")
    print("| metric | Spearman | permutation p | × metrics screened |\n|---|---|---|---|")
    for _, name, rho, p in rows[: a.top]:
        print(f"| `{name}` | {rho:+.3f} | {p:.4f} | {min(1.0, p * len(rows)):.3f} |")


if __name__ == "__main__":
    main()
