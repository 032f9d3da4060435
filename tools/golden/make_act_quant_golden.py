#!/usr/bin/env python3
"""Writes tests/golden/act_quant_quarot.json: activation fake quantization computed with torch the
way QuaRot's ActQuantizer does it (fake_quant/quant_utils.py: find_params / find_params_per_token_
groupwise, asym_quant_dequant / sym_quant_dequant), for tests/test_quant_math.cpp.

GENERATED OUTPUT IS COMMITTED. Run from the repository root:

    ~/.cache/dptq/refvenv/bin/python tools/golden/make_act_quant_golden.py

Values are stored exactly (float32 -> Python float), so the C++ test compares bit for bit.
The constant non-zero group case is left out on purpose: QuaRot divides by a zero scale there
(NaN); quant_math.hpp documents its deviation.
"""
import json
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def quarot_per_token(x, bits, sym, clip):
    maxq = torch.tensor(2 ** (bits - 1) - 1) if sym else torch.tensor(2 ** bits - 1)
    zeros = torch.zeros(x.shape[0])
    xmin = torch.minimum(x.min(1)[0], zeros) * clip
    xmax = torch.maximum(x.max(1)[0], zeros) * clip
    if sym:
        xmax = torch.maximum(torch.abs(xmin), xmax)
        tmp = xmax == 0
        scale = (xmax / maxq).unsqueeze(1).repeat(1, x.shape[-1])
        scale[tmp] = 1
        q = torch.clamp(torch.round(x / scale), -(maxq + 1), maxq)
        return scale * q, scale[:, :1].flatten(), torch.zeros(x.shape[0])
    tmp = (xmin == 0) & (xmax == 0)
    xmin[tmp] = -1
    xmax[tmp] = +1
    scale = (xmax - xmin) / maxq
    zero = torch.round(-xmin / scale)
    s = scale.unsqueeze(1).repeat(1, x.shape[-1])
    z = zero.unsqueeze(1).repeat(1, x.shape[-1])
    q = torch.clamp(torch.round(x / s) + z, 0, maxq)
    return s * (q - z), scale, zero


def quarot_groupwise(x, bits, sym, clip, g):
    maxq = torch.tensor(2 ** (bits - 1) - 1) if sym else torch.tensor(2 ** bits - 1)
    r = x.reshape(x.shape[0], x.shape[1] // g, g)
    xmax = torch.amax(r, dim=2, keepdim=True) * clip
    xmin = torch.amin(r, dim=2, keepdim=True) * clip
    if sym:
        xmax = torch.maximum(torch.abs(xmin), xmax)
        tmp = xmax == 0
        scale = xmax / maxq
        scale[tmp] = 1
        zero = torch.zeros_like(scale)
        q = torch.clamp(torch.round(r / scale), -(maxq + 1), maxq)
        y = scale * q
    else:
        tmp = (xmin == 0) & (xmax == 0)
        xmin[tmp] = -1
        xmax[tmp] = +1
        scale = (xmax - xmin) / maxq
        zero = torch.round(-xmin / scale)
        q = torch.clamp(torch.round(r / scale) + zero, 0, maxq)
        y = scale * (q - zero)
    return y.reshape(x.shape), scale.flatten(), zero.flatten()


def main():
    g = torch.Generator().manual_seed(7)
    cols = 24
    rows = [
        torch.randn(cols, generator=g),
        torch.randn(cols, generator=g) * 50,
        torch.zeros(cols),                                   # zero range
        torch.rand(cols, generator=g) + 0.5,                 # all positive: range still includes 0
        -(torch.rand(cols, generator=g) + 0.5),              # all negative
        torch.arange(cols, dtype=torch.float32) * 0.5 - 6,   # many exact .5 ties at scale 1
        torch.where(torch.arange(cols) == 3, torch.tensor(100.0), torch.randn(cols, generator=g)),  # outlier
        torch.cat([torch.zeros(8), torch.randn(16, generator=g)]),  # a zero group for g = 8
    ]
    x = torch.stack(rows).float()
    cases = []
    for bits, sym, clip, group in [(4, False, 0.9, 0), (8, False, 1.0, 0), (4, True, 1.0, 0), (8, True, 0.9, 0),
                                   (3, False, 0.75, 0), (4, False, 0.95, 8), (4, True, 1.0, 8), (8, False, 1.0, 12)]:
        if group:
            y, scale, zero = quarot_groupwise(x.clone(), bits, sym, clip, group)
        else:
            y, scale, zero = quarot_per_token(x.clone(), bits, sym, clip)
        cases.append({"bits": bits, "sym": sym, "clip_ratio": clip, "group_size": group,
                      "y": [[float(v) for v in row] for row in y.float()],
                      "scales": [float(v) for v in scale.float()], "zeros": [float(v) for v in zero.float()]})
    out = {"format": "dptq-act-quant-golden", "version": "1.0.0",
           "generated_by": "tools/golden/make_act_quant_golden.py (do not edit by hand)",
           "torch": torch.__version__, "rows": len(rows), "cols": cols,
           "x": [[float(v) for v in row] for row in x], "cases": cases}
    path = ROOT / "tests" / "golden" / "act_quant_quarot.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
