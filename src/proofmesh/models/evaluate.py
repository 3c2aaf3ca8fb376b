"""Run a model on an eval set for real and compute a metric.

Back-ends:
- torch (transformers): a Hugging Face folder (``config.json`` + safetensors) — causal LMs
  (``perplexity``, next-token ``accuracy``) and sequence classifiers (``accuracy``); a PEFT
  adapter folder is applied on top of its base model folder;
- onnxruntime: a ``.onnx`` classifier (``accuracy``) on ``{"input": [...], "label": k}``.

Records: ``{"input_ids": [...]}`` (or ``{"text": ...}`` when the model folder has a
tokenizer) for language models; plus ``"label"`` for classifiers. Evaluation is in
``eval()`` mode under ``no_grad``; the number is what an evaluator signs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from proofmesh.errors import InputError

METRICS = {
    # metric: higher_is_better
    "accuracy": True,
    "perplexity": False,
    "loss": False,
}


@dataclass
class EvalResult:
    metric: str
    value: float
    records: int
    tokens: int
    backend: str


def _records_ids(records: list[dict], tokenizer) -> list[list[int]]:
    out = []
    for i, r in enumerate(records):
        if "input_ids" in r:
            ids = r["input_ids"]
            if not isinstance(ids, list) or not all(isinstance(x, int) and x >= 0 for x in ids):
                raise InputError(f"record {i}: input_ids must be a list of non-negative ints", fix="fix the eval set")
        elif "text" in r and tokenizer is not None:
            ids = tokenizer(r["text"])["input_ids"]
        else:
            raise InputError(f"record {i} has no input_ids" + ("" if tokenizer else " (and the model has no tokenizer)"),
                             fix='records look like {"input_ids": [...]} or {"text": "..."} with a tokenizer')
        out.append(ids)
    return out


def load_torch_model(path: str | Path, base: str | Path | None = None):
    """A transformers model (eval mode) from a folder; PEFT adapters need ``base``."""
    import torch  # noqa: F401  (import cost only when evaluating)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    p = Path(path)
    if (p / "adapter_config.json").exists():
        if base is None:
            raise InputError(f"{p} is a LoRA adapter: the base model's weights are needed",
                             fix="pass --base-weights PATH (the folder of the base version)")
        from peft import PeftModel
        base_model = load_torch_model(base)
        model = PeftModel.from_pretrained(base_model, str(p))
        return model.eval()
    if not (p / "config.json").exists():
        raise InputError(f"{p}: no config.json, cannot build the model",
                         fix="evaluate a folder written by save_pretrained() (config.json + safetensors)")
    config = AutoConfig.from_pretrained(str(p))
    archs = " ".join(config.architectures or [])
    cls = AutoModelForSequenceClassification if "SequenceClassification" in archs else AutoModelForCausalLM
    model = cls.from_pretrained(str(p), config=config)
    return model.eval()


def evaluate_torch(model, records: list[dict], metric: str, *, tokenizer=None,
                   progress: Callable[[int], None] | None = None) -> EvalResult:
    """perplexity / loss / accuracy of a transformers model on the records."""
    import torch

    if metric not in METRICS:
        raise InputError(f"unknown metric {metric!r}", fix=f"use one of {', '.join(METRICS)}")
    is_classifier = "SequenceClassification" in type(getattr(model, "base_model", model)).__name__ or \
        "SequenceClassification" in type(model).__name__
    ids_list = _records_ids(records, tokenizer)
    nll, tokens, correct, seen = 0.0, 0, 0, 0
    with torch.no_grad():
        for i, (rec, ids) in enumerate(zip(records, ids_list)):
            x = torch.tensor([ids], dtype=torch.long)
            if is_classifier:
                if metric != "accuracy":
                    raise InputError(f"a classifier supports accuracy, not {metric}", fix="use --metric accuracy")
                if "label" not in rec:
                    raise InputError(f"record {i} has no label", fix='add "label": k to every record')
                logits = model(input_ids=x).logits[0]
                correct += int(int(logits.argmax()) == int(rec["label"]))
                seen += 1
            else:
                if len(ids) < 2:
                    raise InputError(f"record {i}: a language-model record needs >= 2 tokens", fix="drop short records")
                logits = model(input_ids=x).logits[0, :-1].float()
                target = x[0, 1:]
                nll += float(torch.nn.functional.cross_entropy(logits, target, reduction="sum"))
                correct += int((logits.argmax(-1) == target).sum())
                tokens += int(target.numel())
            if progress:
                progress(1)
    if is_classifier:
        value = correct / seen
    elif metric == "perplexity":
        value = math.exp(nll / tokens)
    elif metric == "loss":
        value = nll / tokens
    else:
        value = correct / tokens
    return EvalResult(metric, value, len(records), tokens, "torch")


def evaluate_onnx(path: str | Path, records: list[dict], metric: str = "accuracy") -> EvalResult:
    """Accuracy of an ONNX classifier (first input, first output = logits)."""
    import numpy as np
    import onnxruntime as ort

    if metric != "accuracy":
        raise InputError(f"ONNX classifiers support accuracy, not {metric}", fix="use --metric accuracy")
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own family of errors
        raise InputError(f"{path}: not a loadable ONNX model ({exc})", fix="export it again with torch.onnx.export") from exc
    name = sess.get_inputs()[0].name
    correct = 0
    for i, r in enumerate(records):
        if "input" not in r or "label" not in r:
            raise InputError(f"record {i} needs 'input' and 'label'", fix='e.g. {"input": [0.1, 0.2], "label": 1}')
        x = np.asarray([r["input"]], dtype=np.float32)
        logits = sess.run(None, {name: x})[0]
        correct += int(int(np.argmax(logits[0])) == int(r["label"]))
    return EvalResult(metric, correct / len(records), len(records), 0, "onnxruntime")


def evaluate_path(path: str | Path, records: list[dict], metric: str, *, base: str | Path | None = None,
                  progress: Callable[[int], None] | None = None) -> EvalResult:
    """Evaluate the model at ``path`` (HF folder, PEFT adapter folder + base, or .onnx)."""
    p = Path(path)
    if p.suffix == ".onnx":
        return evaluate_onnx(p, records, metric)
    tokenizer = None
    tok_dir = p if (p / "tokenizer.json").exists() or (p / "tokenizer_config.json").exists() else None
    if tok_dir is None and base is not None and (Path(base) / "tokenizer.json").exists():
        tok_dir = Path(base)
    if tok_dir is not None and any("text" in r for r in records):
        from transformers import AutoTokenizer
        tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    model = load_torch_model(p, base)
    return evaluate_torch(model, records, metric, tokenizer=tokenizer, progress=progress)


def metric_direction(metric: str) -> bool:
    """True if higher is better for ``metric``."""
    if metric not in METRICS:
        raise InputError(f"unknown metric {metric!r}", fix=f"use one of {', '.join(METRICS)}")
    return METRICS[metric]

