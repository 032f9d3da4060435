#!/usr/bin/env python3
"""Independent reference for `dptq zeroshot` (issue 14, acceptance 1): zero-shot PIQA, ARC-Easy,
ARC-Challenge, WinoGrande, LAMBADA (OpenAI), BoolQ and HellaSwag scored by lm-evaluation-harness
0.4.9 itself, on the default model (the SmolLM2-135M-Instruct Q4_1 GGUF, dequantized to fp32 by
transformers, CPU), reading the local copies in ../shared/data/zeroshot/.

    ~/.cache/dptq/refvenv/bin/python tools/golden/zeroshot_reference.py \
        [--tasks piqa,arc_easy,arc_challenge,winogrande,lambada,boolq,hellaswag] [--limit N] \
        [--threads 2] [--batch-size 8] [--out FILE.json]

--limit N scores the first N items of each task in file order. The venv comes from
`scripts/setup.sh --refvenv` (transformers, gguf, lm-eval==0.4.9). Progress goes to stderr; one JSON
object goes to --out (or stdout):
    {"reference": "transformers+lm-eval 0.4.9", "threads": T, "batch_size": B,
     "tasks": {"piqa": {"lm_eval_task": "piqa", "n", "acc", "acc_norm" (or null), "ppl" (lambada
               only, else null), "seconds", "items_per_s",
               "items": [{"index", "gold", "ll": [per-choice summed log-likelihood],
                          "greedy": [per-choice bool], "tokens": [per-choice continuation tokens]}],
               "examples": [{"index", "requests": [[context, continuation], ...],  # first 3 items
                             "continuation_token_ids": [[...], ...]}]
              }, ...}}
With --examples sha256 (used for tests/golden/zeroshot_smollm2.json: the data README forbids copying
the datasets into the repository) each example request is {context_sha256, context_chars,
continuation_sha256, continuation_chars} (UTF-8, Python characters) and only token counts are kept.
tests/golden/zeroshot_smollm2.json was made with
    ~/.cache/dptq/refvenv/bin/python tools/golden/zeroshot_reference.py --limit 20 --threads 1 \
        --examples sha256 --out tests/golden/zeroshot_smollm2.json
LAMBADA has one "choice" per item (the last word) and gold 0; its acc is is_greedy and its ppl is
exp(-mean per-item log-likelihood) (lm-eval's `perplexity` aggregation).

What comes from lm-eval's own code (this is what makes it independent of the C++):
  * the task definitions: each task's YAML (piqa/piqa.yaml, arc/arc_easy.yaml, arc/arc_challenge.yaml,
    winogrande/default.yaml + preprocess_winogrande.py, lambada/lambada_openai.yaml,
    super_glue/boolq/default.yaml, hellaswag/hellaswag.yaml + utils.py) is loaded with
    lm_eval.utils.load_yaml_config and instantiated as lm_eval.api.task.ConfigurableTask; only the
    data source is replaced (TaskConfig.custom_dataset: an in-memory `datasets.Dataset` built from
    the local files in the HF dataset's schema) and the unused splits are switched off;
  * the requests: ConfigurableTask.build_all_requests (fewshot_context with 0 shots, default
    target_delimiter " ", construct_requests: one (context, " " + choice) loglikelihood request per
    choice; WinoGrande is multiple_input: (sentence[:idx] + option, " " + rest.strip()));
  * the log-likelihoods: lm_eval.models.huggingface.HFLM wrapping the already loaded model and a
    PreTrainedTokenizerFast around tools/golden/smollm2_reference_tokenizer.reference_tokenizer
    (SmolLM2's original tokenizer.json pipeline; no BOS). Requests go through HFLM._encode_pair
    (trailing spaces of the context move to the continuation; whole = tok(ctx + cont),
    cont = whole[len(tok(ctx)):]) and HFLM._loglikelihood_tokens (sum log-prob, is_greedy); this is
    what HFLM.loglikelihood does, done here in two steps only to record the continuation's token
    count and to report progress in chunks of --chunk items;
  * the metrics: ConfigurableTask.process_results (acc = argmax ll; acc_norm = argmax ll / len(choice)
    in Python characters of the choice without the delimiter; LAMBADA acc = is_greedy) and the tasks'
    aggregations (mean; perplexity = exp(-mean ll)).

Local data -> HF schema (what the YAMLs expect):
  * piqa: valid.jsonl {goal, sol1, sol2} + valid-labels.lst -> label (int).
  * arc_easy / arc_challenge: the docs as they are ({id, question, choices{text,label}, answerKey}).
    ARC-Easy keeps HF's digit labels ("1234") on some items; lm-eval's doc_to_target
    choices.label.index(answerKey) needs no letter mapping (mapping both sides would give the same
    gold), so none is applied.
  * winogrande: dev.jsonl {sentence, option1, option2, answer} (answer checked against dev-labels.lst).
  * lambada: lambada_test.jsonl {text} (byte-identical to lm-eval's lambada_openai test split).
  * boolq: our file is reformatted as {query: "Passage: <passage>\nQuestion: <question>?",
    choices: [no, yes], gold}; passage = query minus the leading "Passage: " up to the LAST
    "\nQuestion: " (item 2417's passage itself contains "\nQuestion: "), question = the rest minus
    the trailing "?", label = gold; lm-eval's template "{{passage}}\nQuestion: {{question}}?\nAnswer:"
    then gives back the query text exactly (checked per item). NOTE: HF super_glue/boolq passages
    begin with the Wikipedia title ("Ethanol fuel -- All biomass ..."); this copy has no titles, so
    the prompts are shorter than lm-eval's on HF data and the numbers are not comparable with
    published BoolQ scores to the last digit. The C++ side reads the same file by the same rules.
  * hellaswag: hellaswag_val_full.txt.bz2 is llama.cpp's 6-lines-per-item format (context line,
    gold index, 4 endings), already preprocessed by llama.cpp's script: its context line is
    "activity_label: ctx" with ctx_b NOT capitalized (lm-eval builds ctx_a + " " +
    ctx_b.capitalize()). The YAML's process_docs (which needs the raw ctx_a/ctx_b fields) is
    therefore replaced by one that applies lm-eval's own hellaswag utils.preprocess to the context
    line (query) and to each ending (choices); doc_to_text/target/choice stay the YAML's. Prompts
    differ slightly from lm-eval on HF data; the C++ side uses the same file and the same rules.
"""
import argparse, bz2, hashlib, importlib.metadata, json, math, os, pathlib, sys, time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import peft  # noqa: E402,F401  (imported by lm-eval; importing it replaces sys.modules["transformers"], so first)
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast  # noqa: E402

# lm-eval 0.4.9 names transformers.AutoModelForVision2Seq (hf_vlms.py's class body, HFLM._model_call's
# backend assertion); transformers 5 renamed that class AutoModelForImageTextToText. Only the name
# is needed: our model is causal.
if not hasattr(transformers, "AutoModelForVision2Seq"):
    transformers.AutoModelForVision2Seq = getattr(transformers, "AutoModelForImageTextToText", type("_Absent", (), {}))

import datasets  # noqa: E402
import lm_eval  # noqa: E402
from lm_eval.api.task import ConfigurableTask  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402
from lm_eval.utils import load_yaml_config  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from smollm2_reference_tokenizer import reference_tokenizer  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
CACHE = pathlib.Path(os.environ.get("DPTQ_CACHE", pathlib.Path.home() / ".cache/dptq"))
GGUF = CACHE / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
DATA = ROOT.parent / "shared/data/zeroshot"
LM_EVAL_TASKS = pathlib.Path(lm_eval.__file__).parent / "tasks"
LM_EVAL_VERSION = "0.4.9"

ALL_TASKS = ["piqa", "arc_easy", "arc_challenge", "winogrande", "lambada", "boolq", "hellaswag"]
# our task name -> (lm-eval YAML under lm_eval/tasks, the split lm-eval evaluates)
YAML = {
    "piqa": ("piqa/piqa.yaml", "validation"),
    "arc_easy": ("arc/arc_easy.yaml", "test"),
    "arc_challenge": ("arc/arc_challenge.yaml", "test"),
    "winogrande": ("winogrande/default.yaml", "validation"),
    "lambada": ("lambada/lambada_openai.yaml", "test"),
    "boolq": ("super_glue/boolq/default.yaml", "validation"),
    "hellaswag": ("hellaswag/hellaswag.yaml", "validation"),
}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def labels(path):
    return [line.strip() for line in open(path, encoding="utf-8") if line.strip()]


# ---- local files -> docs in the HF dataset's schema ----
def docs_piqa():
    d, lab = jsonl(DATA / "piqa/valid.jsonl"), labels(DATA / "piqa/valid-labels.lst")
    assert len(d) == len(lab)
    return [{"goal": x["goal"], "sol1": x["sol1"], "sol2": x["sol2"], "label": int(y)} for x, y in zip(d, lab)]


def docs_arc_easy():
    return json.load(open(DATA / "arc_easy/test.json", encoding="utf-8"))


def docs_arc_challenge():
    return jsonl(DATA / "arc_challenge/test.jsonl")


def docs_winogrande():
    d, lab = jsonl(DATA / "winogrande/dev.jsonl"), labels(DATA / "winogrande/dev-labels.lst")
    assert len(d) == len(lab)
    out = []
    for x, y in zip(d, lab):
        assert x["answer"] == y, (x, y)
        out.append({"sentence": x["sentence"], "option1": x["option1"], "option2": x["option2"], "answer": y})
    return out


def docs_lambada():
    return [{"text": x["text"]} for x in jsonl(DATA / "lambada/lambada_test.jsonl")]


def docs_boolq():
    out = []
    for i, x in enumerate(jsonl(DATA / "boolq/boolq.jsonl")):
        q = x["query"]
        assert q.startswith("Passage: ") and q.endswith("?") and x["choices"] == ["no", "yes"], i
        passage, question = q[len("Passage: "):].rsplit("\nQuestion: ", 1)
        question = question[:-1]
        # the YAML's template must give the query back (checked again on the built prompt below)
        assert f"Passage: {passage}\nQuestion: {question}?" == q, i
        out.append({"question": question, "passage": passage, "idx": i, "label": int(x["gold"])})
    return out


def docs_hellaswag():
    with bz2.open(DATA / "hellaswag/hellaswag_val_full.txt.bz2", "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    while lines and lines[-1] == "":
        lines.pop()
    assert len(lines) % 6 == 0, len(lines)
    return [{"ctx": lines[k], "endings": lines[k + 2:k + 6], "label": lines[k + 1].strip()}
            for k in range(0, len(lines), 6)]


DOCS = {"piqa": docs_piqa, "arc_easy": docs_arc_easy, "arc_challenge": docs_arc_challenge,
        "winogrande": docs_winogrande, "lambada": docs_lambada, "boolq": docs_boolq, "hellaswag": docs_hellaswag}


def hellaswag_process_docs(preprocess):
    """Stands in for lm-eval's hellaswag utils.process_docs on llama.cpp's file: the context line
    already is activity_label + ": " + ctx, so only lm-eval's preprocess() (taken from the module
    the YAML's own process_docs lives in) is applied to it and to each ending."""
    return lambda dataset: dataset.map(lambda doc: {"query": preprocess(doc["ctx"]),
                                                    "choices": [preprocess(e) for e in doc["endings"]]})


def make_task(name, docs):
    yaml_rel, split = YAML[name]
    cfg = load_yaml_config(yaml_path=str(LM_EVAL_TASKS / yaml_rel), mode="full")
    lm_task = cfg["task"]
    ds = datasets.DatasetDict({split: datasets.Dataset.from_list(docs)})
    cfg.update(custom_dataset=lambda **_: ds, dataset_kwargs=None, training_split=None, fewshot_split=None,
               validation_split=split if split == "validation" else None,
               test_split=split if split == "test" else None, num_fewshot=0)
    if name == "hellaswag":
        cfg["process_docs"] = hellaswag_process_docs(cfg["process_docs"].__globals__["preprocess"])
    cfg["metadata"] = cfg.get("metadata") or {}
    return lm_task, ConfigurableTask(config=cfg)


def load_lm(batch_size):
    model = AutoModelForCausalLM.from_pretrained(str(GGUF.parent), gguf_file=GGUF.name, dtype=torch.float32).eval()
    tok = PreTrainedTokenizerFast(tokenizer_object=reference_tokenizer(GGUF))
    # special tokens named by the GGUF (tokenizer.ggml.{bos,eos,unknown,padding}_token_id); HFLM
    # encodes with add_special_tokens=False and SmolLM2 adds no BOS, so they only name the pad token
    # (HFLM pads with zeros on the right anyway) and the unused empty-context prefix.
    import gguf
    from smollm2_reference_tokenizer import gguf_vocab
    toks, fields = gguf_vocab(GGUF)[0], gguf.GGUFReader(str(GGUF)).fields
    for attr, key in (("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"),
                      ("unk_token", "unknown_token_id"), ("pad_token", "padding_token_id")):
        f = fields.get(f"tokenizer.ggml.{key}")
        if f is not None:
            setattr(tok, attr, toks[int(f.parts[f.data[0]][0])])
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size, device="cpu")
    return lm, reference_tokenizer(GGUF)


def run_task(name, lm, ref_tok, limit, chunk, example_mode):
    t_load = time.time()
    docs = DOCS[name]()
    if limit is not None:
        docs = docs[:limit]
    lm_task, task = make_task(name, docs)
    task.build_all_requests(limit=limit, rank=0, world_size=1)
    by_doc = {}
    for inst in task.instances:
        by_doc.setdefault(inst.doc_id, []).append(inst)
    doc_ids = sorted(by_doc)
    for d in doc_ids:
        by_doc[d].sort(key=lambda r: r.idx)
    log(f"[{name}] lm-eval task {lm_task}: {len(doc_ids)} items, {len(task.instances)} requests "
        f"(built in {time.time() - t_load:.1f}s)")

    items, examples, metrics = [], [], {}
    t0 = time.time()
    for c in range(0, len(doc_ids), chunk):
        ids = doc_ids[c:c + chunk]
        reqs = [inst for d in ids for inst in by_doc[d]]
        # = HFLM.loglikelihood (TemplateLM.loglikelihood) in two steps; no request has an empty context
        enc = []
        for inst in reqs:
            context, continuation = inst.args
            assert context != ""
            ctx_enc, cont_enc = lm._encode_pair(context, continuation)
            enc.append(((context, continuation), ctx_enc, cont_enc))
        res = lm._loglikelihood_tokens(enc, disable_tqdm=True)
        pos = 0
        for d in ids:
            insts = by_doc[d]
            out = res[pos:pos + len(insts)]
            ntok = [len(e[2]) for e in enc[pos:pos + len(insts)]]
            pos += len(insts)
            doc = insts[0].doc
            r = task.process_results(doc, out)  # lm-eval's own per-item metrics
            for k, v in r.items():
                metrics.setdefault(k, []).append(v)
            if task.OUTPUT_TYPE == "multiple_choice":
                gold = task.doc_to_text(doc) if task.multiple_input else task.doc_to_target(doc)
                if isinstance(gold, str):
                    gold = task.doc_to_choice(doc).index(gold)
            else:
                gold = 0
            items.append({"index": d, "gold": int(gold), "ll": [float(ll) for ll, _ in out],
                          "greedy": [bool(g) for _, g in out], "tokens": ntok})
            if len(examples) < 3:
                examples.append({"index": d, "requests": [list(i.args) for i in insts],
                                 "continuation_token_ids": [e[2] for e in enc[pos - len(insts):pos]]})
        done = len(items)
        el = time.time() - t0
        log(f"[{name}] {done}/{len(doc_ids)} items  {el:.0f}s  {done / el:.2f} items/s  "
            + "  ".join(f"{k} {sum(v) / len(v):.4f}" for k, v in metrics.items() if k != "perplexity"))
    secs = time.time() - t0

    # cross-checks against independent re-derivations (tokenizer, acc_norm by characters)
    for it, ex in zip(items, examples):
        for (ctx, cont), ids_ in zip(ex["requests"], ex["continuation_token_ids"]):
            n = len(ctx) - len(ctx.rstrip())
            c2, k2 = ctx[:len(ctx) - n], ctx[len(ctx) - n:] + cont
            whole, head = ref_tok.encode(c2 + k2).ids, ref_tok.encode(c2).ids
            assert ids_ == whole[len(head):], (name, ctx[-40:], cont)
    if name == "boolq":
        raw = jsonl(DATA / "boolq/boolq.jsonl")
        for ex in examples:
            assert ex["requests"][0][0] == raw[ex["index"]]["query"][len("Passage: "):] + "\nAnswer:"

    agg = task.aggregation()
    out = {"lm_eval_task": lm_task, "n": len(items)}
    out["acc"] = float(agg["acc"](metrics["acc"]))
    out["acc_norm"] = float(agg["acc_norm"](metrics["acc_norm"])) if "acc_norm" in metrics else None
    out["ppl"] = float(agg["perplexity"](metrics["perplexity"])) if "perplexity" in metrics else None
    if task.OUTPUT_TYPE == "multiple_choice":
        choices = [task.doc_to_choice(inst[0].doc) for inst in (by_doc[d] for d in doc_ids)]
        mine = [max(range(len(it["ll"])), key=lambda j: it["ll"][j] / len(ch[j])) == it["gold"]
                for it, ch in zip(items, choices)]
        if out["acc_norm"] is not None:
            assert abs(sum(mine) / len(mine) - out["acc_norm"]) < 1e-12, (name, sum(mine) / len(mine), out["acc_norm"])
    else:
        assert abs(out["ppl"] - math.exp(-sum(it["ll"][0] for it in items) / len(items))) < 1e-9 * out["ppl"]
    if example_mode == "sha256":  # no dataset text in files that get committed (data README)
        h = lambda x: hashlib.sha256(x.encode("utf-8")).hexdigest()  # noqa: E731
        examples = [{"index": ex["index"],
                     "requests": [{"context_sha256": h(c), "context_chars": len(c),
                                   "continuation_sha256": h(k), "continuation_chars": len(k)}
                                  for c, k in ex["requests"]],
                     "continuation_tokens": [len(t) for t in ex["continuation_token_ids"]]} for ex in examples]
    out.update(seconds=secs, items_per_s=len(items) / secs if secs > 0 else None, items=items, examples=examples)
    log(f"[{name}] n {out['n']}  acc {out['acc']:.4f}  acc_norm {out['acc_norm']}  ppl {out['ppl']}  "
        f"{secs:.0f}s  {out['items_per_s']:.2f} items/s")
    return out


def dump(result):
    """JSON with one line per item (and per example), so that golden files diff readably."""
    lines = {}
    shallow = {**result, "tasks": {}}
    for t, v in result["tasks"].items():
        w = dict(v)
        for key in ("items", "examples"):
            w[key] = []
            for x in v[key]:
                tag = f"@@{len(lines)}@@"
                lines[tag] = json.dumps(x, ensure_ascii=False)
                w[key].append(tag)
        shallow["tasks"][t] = w
    text = json.dumps(shallow, indent=1, ensure_ascii=False)
    for tag, line in lines.items():
        text = text.replace(f'"{tag}"', line, 1)
    assert json.loads(text) == result
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default=",".join(ALL_TASKS))
    ap.add_argument("--limit", type=int, default=None, help="first N items of each task (file order)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8, help="HFLM batch size (requests per forward)")
    ap.add_argument("--chunk", type=int, default=25, help="items per progress report")
    ap.add_argument("--examples", choices=["text", "sha256"], default="text",
                    help="first 3 items' (context, continuation) as text, or as sha256 + length only "
                         "(for committed golden files: the data may not be copied into the repository)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    tasks = [t.strip() for t in a.tasks.split(",") if t.strip()]
    for t in tasks:
        if t not in ALL_TASKS:
            ap.error(f"unknown task {t!r} (known: {', '.join(ALL_TASKS)})")
    torch.set_num_threads(a.threads)
    have = importlib.metadata.version("lm_eval")
    if have != LM_EVAL_VERSION:
        sys.exit(f"lm-eval {have} installed; this reference is written against {LM_EVAL_VERSION}")
    t0 = time.time()
    lm, ref_tok = load_lm(a.batch_size)
    log(f"model loaded in {time.time() - t0:.1f}s; max_length {lm.max_length}, batch {a.batch_size}, threads {a.threads}")
    result = {"reference": f"transformers+lm-eval {LM_EVAL_VERSION}", "transformers": transformers.__version__,
              "torch": torch.__version__, "model": GGUF.name, "threads": a.threads, "batch_size": a.batch_size,
              "limit": a.limit, "examples": a.examples, "tasks": {}}
    for t in tasks:
        result["tasks"][t] = run_task(t, lm, ref_tok, a.limit, a.chunk, a.examples)
    text = dump(result)
    if a.out:
        pathlib.Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(a.out).write_text(text + "\n", encoding="utf-8")
        log(f"wrote {a.out}")
    else:
        print(text)


if __name__ == "__main__":
    main()
