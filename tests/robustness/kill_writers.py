#!/usr/bin/env python3
"""kill -9 at random points during every writer (issue 16, docs/robustness.md).

    python3 tests/robustness/kill_writers.py DPTQ [--studio DPTQ_STUDIO] [--kills N] [--seed S]

For each writer — `dptq profile` (HDF5 trace), `dptq plan` (plan JSON), `dptq sweep` (CSV),
`dptq quantize` (checkpoint folder), `dptq export-hf` (HF folder) and the studio's headless
export (plan, trace and PNGs; needs Xvfb):
  1. one run killed by SIGKILL at the worst moment, deterministically (DPTQ_FAILPOINT=before-rename:
     the temporary is complete, the rename not done): the target must be absent, a temporary
     must be there;
  2. N runs killed with SIGKILL after a random delay in [0.3, 1.1] x the full run time: the
     target path must be absent or complete (it parses);
  3. one uninterrupted run: it must succeed, write a complete target and leave no temporary
     at all ("<target>.tmp-*"): writers remove the leftovers of killed runs.
Exit status 0 when every writer behaves.
"""
import argparse
import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "fixtures" / "tiny" / "llama2_spm"


def complete_h5(p):
    return subprocess.run([A.dptq, "report", str(p)], capture_output=True).returncode == 0


def complete_json(p):
    try:
        json.loads(pathlib.Path(p).read_text())
        return True
    except (ValueError, OSError):
        return False


def complete_csv(p):
    lines = pathlib.Path(p).read_text().splitlines()
    return len(lines) >= 2 and all(l.count(",") == lines[0].count(",") for l in lines)


def complete_model(p):
    return subprocess.run([A.dptq, "info", str(p)], capture_output=True).returncode == 0


def complete_png(p):
    b = pathlib.Path(p).read_bytes()
    return b.startswith(b"\x89PNG\r\n\x1a\n") and b.endswith(b"IEND\xaeB`\x82")


def complete_export(d):
    d = pathlib.Path(d)
    if not d.exists():
        return True
    checks = {".json": complete_json, ".h5": complete_h5, ".png": complete_png}
    for f in d.iterdir():
        if ".tmp-" in f.name:
            continue  # a temporary beside the targets is allowed until the next successful run
        ok = checks.get(f.suffix)
        if ok and not ok(f):
            return False
    return True


def writers(work, trace):
    w = [
        ("profile (trace .h5)", lambda o: [A.dptq, "profile", str(TINY), "--samples", "8", "--seqlen", "64", "--out", str(o)],
         work / "t.h5", complete_h5),
        ("plan (.plan.json)", lambda o: [A.dptq, "plan", str(trace), "--policy", "first-last", "--budget", "1", "--out", str(o)],
         work / "p.plan.json", complete_json),
        ("sweep (.csv)", lambda o: [A.dptq, "sweep", str(TINY), "--trace", str(trace), "--text", str(work / "text.txt"),
                                    "--method", "rtn", "--policies", "first-last", "--budgets", "0,1", "--seqlen", "32",
                                    "--max-windows", "2", "--out", str(o)],
         work / "s.csv", complete_csv),
        ("quantize (checkpoint folder)", lambda o: [A.dptq, "quantize", str(TINY), "--method", "rtn", "--out", str(o)],
         work / "ckpt", complete_model),
        ("export-hf (HF folder)", lambda o: [A.dptq, "export-hf", str(TINY), "--out", str(o)],
         work / "hf", complete_model),
    ]
    if A.studio:
        w.append(("studio export (plan, trace, PNGs)",
                  lambda o: [A.studio, "--no-autoload", "--trace", str(trace), "--export", str(o), "--frames", "8", "--wait-idle",
                             "--width", "800", "--height", "600"],
                  work / "export", complete_export))
    return w


def leftovers(target):
    return sorted(str(p) for p in target.parent.glob(target.name + ".tmp-*")) + \
        (sorted(str(p) for p in target.glob("*.tmp-*")) if target.is_dir() else [])


def clear(target):
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()


def run_writer(name, cmd, target, complete, env):
    clear(target)
    t0 = time.monotonic()
    r = subprocess.run(cmd(target), capture_output=True, text=True, env=env)
    full = time.monotonic() - t0
    if r.returncode != 0:
        return f"FAIL: the uninterrupted run failed ({r.returncode}): {r.stderr.strip()[-300:]}", full, 0, 0
    if not target.exists() or (target.is_dir() and not any(target.iterdir())):
        return "FAIL: the uninterrupted run wrote nothing at the target", full, 0, 0
    problems, killed_mid, temps_seen = [], 0, 0
    # The worst moment, deterministically: the temporary is complete, the rename not yet done.
    clear(target)
    r = subprocess.run(cmd(target), capture_output=True, env={**env, "DPTQ_FAILPOINT": "before-rename"})
    if r.returncode != -signal.SIGKILL:
        problems.append(f"the failpoint run was not killed (exit {r.returncode})")
    if not leftovers(target):
        problems.append("no temporary beside the target after the failpoint kill")
    if target.exists() and not target.is_dir():
        problems.append("the target exists after a kill before the rename")
    if target.exists() and not complete(target):
        problems.append("a killed run left an incomplete file at the target path")
    temps_seen += len(leftovers(target))
    for _ in range(A.kills):
        clear(target)
        p = subprocess.Popen(cmd(target), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        time.sleep(RNG.uniform(0.3 * full, 1.1 * full))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            killed_mid += 1
        p.wait()
        temps_seen += len(leftovers(target))
        if target.exists() and not complete(target):
            problems.append("a killed run left an incomplete file at the target path")
    # The next successful run removes the temporaries of the killed ones.
    clear(target)
    r = subprocess.run(cmd(target), capture_output=True, text=True, env=env)
    if r.returncode != 0:
        problems.append(f"the run after the kills failed: {r.stderr.strip()[-300:]}")
    if not complete(target):
        problems.append("the run after the kills wrote an incomplete target")
    left = leftovers(target)
    if left:
        problems.append("temporaries left after a successful run: " + ", ".join(left))
    return ("FAIL: " + "; ".join(sorted(set(problems)))) if problems else "ok", full, killed_mid, temps_seen


def main():
    global A, RNG
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dptq")
    ap.add_argument("--studio", help="dptq-studio binary (the studio export is skipped without it or without Xvfb)")
    ap.add_argument("--kills", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--markdown", action="store_true")
    A = ap.parse_args()
    RNG = random.Random(A.seed)
    env = dict(os.environ)
    xvfb = None
    if A.studio:
        if shutil.which("Xvfb"):
            display = f":{90 + os.getpid() % 400}"
            xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
            env["DISPLAY"] = display
            env["LIBGL_ALWAYS_SOFTWARE"] = "1"
        else:
            print("kill_writers: Xvfb not installed: the studio export is skipped", file=sys.stderr)
            A.studio = None
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="dptq-kill-") as t:
            work = pathlib.Path(t)
            (work / "text.txt").write_text("The quick brown fox jumps over the lazy dog. " * 60)
            trace = work / "base.h5"
            subprocess.run([A.dptq, "profile", str(TINY), "--samples", "2", "--seqlen", "16", "--out", str(trace)],
                           check=True, capture_output=True)
            for name, cmd, target, complete in writers(work, trace):
                status, full, killed, temps = run_writer(name, cmd, target, complete, env)
                rows.append((name, status, full, killed, temps))
                print(f"[{status[:4]:4}] {name}: full run {full:.1f} s, failpoint kill + {killed} of {A.kills} random kills mid-run, "
                      f"{temps} temporaries seen after kills" + ("" if status == "ok" else "\n       " + status),
                      file=sys.stderr)
    finally:
        if xvfb:
            xvfb.terminate()
    if A.markdown:
        print("| writer | full run (s) | killed at the failpoint | random kills landing mid-run | temporaries seen after kills | after the next run |")
        print("|---|---|---|---|---|---|")
        for name, status, full, killed, temps in rows:
            print(f"| {name} | {full:.1f} | target absent, temporary left | {killed} of {A.kills} | {temps} | {'no temporaries, target complete' if status == 'ok' else status} |")
    return 1 if any(r[1] != "ok" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
