#!/usr/bin/env python3
"""Writes tests/golden/weight_quant_quarot.json: weight quantization computed with torch the way
QuaRot does it, for tests/test_weight_quant.cpp:
  - RTN: fake_quant/quant_utils.py WeightQuantizer.find_params (perchannel=True, with and without
    mse) and its sym/asym quant-dequant;
  - GPTQ: fake_quant/gptq_utils.py GPTQ.fasterquant (dead columns, act order, static groups,
    dampening, Cholesky of the inverse, block-wise lazy updates).
Both are re-implemented here in a few lines following the reference's op order, recording the
integer codes and the scales the reference keeps implicitly.

GENERATED OUTPUT IS COMMITTED. Run from the repository root (CPU, offline):

    ~/.cache/dptq/refvenv/bin/python tools/golden/make_weight_quant_golden.py

Values are stored exactly (float32 -> Python float), so the C++ test compares RTN codes and scales
bit for bit. GPTQ runs BLAS products whose summation order may differ between builds, so the test
allows a few differing codes there.
"""
import json
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def quant(x, scale, zero, maxq, sym):
    """Integer codes (as float), QuaRot's sym_quant / asym_quant."""
    if sym:
        return torch.clamp(torch.round(x / scale), -(maxq + 1), maxq)
    return torch.clamp(torch.round(x / scale) + zero, 0, maxq)


def dequant(q, scale, zero, sym):
    return scale * q if sym else scale * (q - zero)


def find_params(x, bits, sym, mse, norm=2.4, grid=100, maxshrink=0.8):
    """WeightQuantizer.configure(perchannel=True, ...) + find_params(x): per-row scale and zero."""
    maxq = torch.tensor(2 ** (bits - 1) - 1) if sym else torch.tensor(2 ** bits - 1)
    tmp = torch.zeros(x.shape[0])
    xmin = torch.minimum(x.min(1)[0], tmp)
    xmax = torch.maximum(x.max(1)[0], tmp)
    if sym:
        xmax = torch.maximum(torch.abs(xmin), xmax).clamp(min=1e-5)
        scale = xmax / maxq
        zero = torch.zeros_like(scale)
    else:
        tmp = (xmin == 0) & (xmax == 0)
        xmin[tmp] = -1
        xmax[tmp] = +1
        scale = (xmax - xmin).clamp(min=1e-5) / maxq
        zero = torch.round(-xmin / scale)
    if mse:
        best = torch.full([x.shape[0]], float("inf"))
        for i in range(int(maxshrink * grid)):
            p = 1 - i / grid
            xmin1 = p * xmin
            xmax1 = p * xmax
            if sym:
                scale1 = xmax1 / maxq
                zero1 = torch.zeros_like(scale1)
            else:
                scale1 = (xmax1 - xmin1) / maxq
                zero1 = torch.round(-xmin1 / scale1)
            s1, z1 = scale1.unsqueeze(1), zero1.unsqueeze(1)
            q = dequant(quant(x, s1, z1, maxq, sym), s1, z1, sym)
            q -= x
            q.abs_()
            q.pow_(norm)
            err = torch.sum(q, 1)
            tmp = err < best
            if torch.any(tmp):
                best[tmp] = err[tmp]
                scale[tmp] = scale1[tmp]
                zero[tmp] = zero1[tmp]
    return scale, zero, maxq


def rtn(W, bits, sym, mse, group=0, **kw):
    """Codes [rows, cols], scales/zeros [rows] or [rows, groups] (groups: find_params per slice)."""
    if group == 0:
        scale, zero, maxq = find_params(W, bits, sym, mse, **kw)
        q = quant(W, scale.unsqueeze(1), zero.unsqueeze(1), maxq, sym)
        return q, scale, zero, dequant(q, scale.unsqueeze(1), zero.unsqueeze(1), sym)
    qs, ss, zs, ws = [], [], [], []
    for i in range(0, W.shape[1], group):
        q, s, z, w = rtn(W[:, i:i + group], bits, sym, mse, 0, **kw)
        qs.append(q), ss.append(s), zs.append(z), ws.append(w)
    return torch.cat(qs, 1), torch.stack(ss, 1), torch.stack(zs, 1), torch.cat(ws, 1)


def gptq(W, H, bits, sym, mse, blocksize=128, percdamp=0.01, groupsize=-1, actorder=False,
         static_groups=False):
    """GPTQ.fasterquant on a copy of W; returns codes (original column order) and the scales."""
    W = W.clone().float()
    H = H.clone()
    columns = W.shape[1]
    scale, zero, maxq = find_params(W, bits, sym, mse)
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    groups = []
    if static_groups:
        for i in range(0, columns, groupsize):
            groups.append(find_params(W[:, i:(i + groupsize)], bits, sym, mse)[:2])
    if actorder:
        perm = torch.argsort(torch.diag(H), descending=True)
        W = W[:, perm]
        H = H[perm][:, perm]
        invperm = torch.argsort(perm)
    Q = torch.zeros_like(W)
    damp = percdamp * torch.mean(torch.diag(H))
    diag = torch.arange(columns)
    H[diag, diag] += damp
    H = torch.linalg.cholesky(H)
    H = torch.cholesky_inverse(H)
    H = torch.linalg.cholesky(H, upper=True)
    Hinv = H
    group_scales, group_zeros = {}, {}
    for i1 in range(0, columns, blocksize):
        i2 = min(i1 + blocksize, columns)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]
            if groupsize != -1:
                if not static_groups:
                    if (i1 + i) % groupsize == 0:
                        scale, zero, _ = find_params(W[:, (i1 + i):(i1 + i + groupsize)], bits, sym, mse)
                        group_scales[(i1 + i) // groupsize] = scale
                        group_zeros[(i1 + i) // groupsize] = zero
                else:
                    idx = i1 + i
                    if actorder:
                        idx = perm[idx]
                    scale, zero = groups[idx // groupsize]
            q = quant(w.unsqueeze(1), scale.unsqueeze(1), zero.unsqueeze(1), maxq, sym).flatten()
            Q[:, i1 + i] = q
            err1 = (w - dequant(q, scale, zero, sym)) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    if actorder:
        Q = Q[:, invperm]
    if groupsize == -1:
        return Q, scale, zero
    if static_groups:
        return Q, torch.stack([s for s, _ in groups], 1), torch.stack([z for _, z in groups], 1)
    n = columns // groupsize
    return (Q, torch.stack([group_scales[j] for j in range(n)], 1),
            torch.stack([group_zeros[j] for j in range(n)], 1))


def floats(t):
    return [float(v) for v in t.flatten()]


def ints(t):
    return [int(v) for v in t.flatten()]


def main():
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(11)
    cols = 32
    torch.manual_seed(5)  # StudentT draws from the global generator
    rows = [
        torch.randn(cols, generator=g),
        torch.randn(cols, generator=g),
        torch.randn(cols, generator=g) * 0.5 + 0.2,
        torch.randn(cols, generator=g) * 2.0,
        torch.randn(cols, generator=g) * 0.01,                                       # tiny range
        torch.zeros(cols),                                                           # zero row
        torch.where(torch.arange(cols) == 7, torch.tensor(20.0), torch.randn(cols, generator=g)),  # outlier
        torch.rand(cols, generator=g) + 0.5,                                         # all positive
        -(torch.rand(cols, generator=g) + 0.5),                                      # all negative
        torch.distributions.StudentT(3.0).sample((cols,)),                           # heavy tails
        (torch.arange(cols, dtype=torch.float32) - 16) * 0.25,                       # exact ties
        torch.randn(cols, generator=g) * 100,
    ]
    W = torch.stack(rows).float()

    rtn_cases = []
    for bits, sym, mse, group, kw in [(4, True, True, 0, {}), (4, True, False, 0, {}), (4, False, True, 0, {}),
                                      (4, False, False, 0, {}), (8, True, True, 0, {}), (3, False, True, 0, {}),
                                      (4, True, True, 0, {"grid": 20, "maxshrink": 0.5, "norm": 2.0}),
                                      (4, False, True, 0, {"grid": 10, "maxshrink": 1.0, "norm": 3.0}),
                                      (4, True, True, 8, {}), (4, False, True, 16, {})]:
        q, s, z, wq = rtn(W, bits, sym, mse, group, **kw)
        rtn_cases.append({"bits": bits, "sym": sym, "mse": mse, "group_size": group,
                          "grid": kw.get("grid", 100), "max_shrink": kw.get("maxshrink", 0.8),
                          "norm": kw.get("norm", 2.4), "codes": ints(q), "scales": floats(s),
                          "zeros": floats(z), "wq": floats(wq)})

    # A calibration Hessian with correlated inputs and a dead input column (5), made with GPTQ's
    # add_batch update over 8 batches of [4, 16, cols].
    mix = torch.randn(cols, cols, generator=g) / cols ** 0.5 + torch.eye(cols)
    col_scale = torch.exp(torch.randn(cols, generator=g))
    H = torch.zeros(cols, cols)
    n = 0
    for _ in range(8):
        inp = (torch.randn(4, 16, cols, generator=g) @ mix) * col_scale
        inp[..., 5] = 0
        tmp = inp.shape[0]
        inp = inp.reshape((-1, inp.shape[-1])).t()
        H *= n / (n + tmp)
        n += tmp
        inp = (2 / n) ** 0.5 * inp.float()
        H += inp.matmul(inp.t())

    gptq_cases = []
    for bits, sym, mse, block, group, actorder, static in [(4, True, True, 8, 0, True, False),
                                                           (4, True, True, 8, 0, False, False),
                                                           (4, False, False, 8, 0, True, False),
                                                           (3, True, False, 32, 0, True, False),
                                                           (4, True, True, 8, 8, False, False),
                                                           (4, True, True, 16, 8, False, False),
                                                           (4, True, True, 8, 8, True, True)]:
        q, s, z = gptq(W, H, bits, sym, mse, blocksize=block, groupsize=group if group else -1,
                       actorder=actorder, static_groups=static)
        gptq_cases.append({"bits": bits, "sym": sym, "mse": mse, "block": block, "group_size": group,
                           "act_order": actorder, "static_groups": static, "damp": 0.01,
                           "codes": ints(q), "scales": floats(s), "zeros": floats(z)})

    out = {"format": "dptq-weight-quant-golden", "version": "1.0.0",
           "generated_by": "tools/golden/make_weight_quant_golden.py (do not edit by hand)",
           "torch": torch.__version__, "rows": W.shape[0], "cols": cols,
           "w": floats(W), "h": floats(H), "rtn": rtn_cases, "gptq": gptq_cases}
    path = ROOT / "tests" / "golden" / "weight_quant_quarot.json"
    path.write_text(json.dumps(out, separators=(",", ":")) + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
