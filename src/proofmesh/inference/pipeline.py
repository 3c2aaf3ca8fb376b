"""Collaborative inference: one model split into pipeline stages served by different nodes.

:func:`split_model` cuts an ONNX graph at an intermediate tensor with
``onnx.utils.extract_model`` into stage files (input → cut, cut → output). Each stage
is published as its own model version (so its exact file is pinned and its nodes
refuse any other) and served by any node; :class:`Pipeline` chains routers, passing
each stage's output to the next, and keeps every stage's signed receipt — a chain of
strangers serves one model, and each link is accountable for its own step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proofmesh.errors import InputError


def candidate_cuts(onnx_path: str | Path) -> list[str]:
    """Intermediate tensors (node outputs that are not graph outputs), in graph order."""
    import onnx

    g = onnx.load(str(onnx_path)).graph
    finals = {o.name for o in g.output}
    return [o for n in g.node for o in n.output if o not in finals]


def split_model(onnx_path: str | Path, out_dir: str | Path, cut: str | None = None) -> tuple[Path, Path, str]:
    """Split ``onnx_path`` at tensor ``cut`` (default: the middle intermediate tensor)
    into two ONNX files; returns (stage1, stage2, cut)."""
    import onnx
    from onnx.utils import extract_model

    onnx_path, out_dir = Path(onnx_path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(onnx_path))
    g = model.graph
    inits = {i.name for i in g.initializer}
    inputs = [i.name for i in g.input if i.name not in inits]
    outputs = [o.name for o in g.output]
    cuts = candidate_cuts(onnx_path)
    if not cuts:
        raise InputError(f"{onnx_path} has no intermediate tensor to cut at", fix="a model needs >= 2 operators")
    cut = cut or cuts[len(cuts) // 2]
    if cut not in cuts:
        raise InputError(f"{cut!r} is not an intermediate tensor of {onnx_path.name}",
                         fix=f"choose one of {cuts[:20]}")
    s1, s2 = out_dir / f"{onnx_path.stem}.stage1.onnx", out_dir / f"{onnx_path.stem}.stage2.onnx"
    try:
        extract_model(str(onnx_path), str(s1), inputs, [cut])
        extract_model(str(onnx_path), str(s2), [cut], outputs)
    except Exception as exc:
        raise InputError(f"cannot split at {cut!r}: {exc}",
                         fix="pick a tensor that separates the graph into two parts") from exc
    return s1, s2, cut


@dataclass
class PipelineAnswer:
    output: Any
    stages: list = field(default_factory=list)     # one router Answer (with its receipt) per stage


class Pipeline:
    """Runs a request through stage routers in order (each stage: its own version and nodes)."""

    def __init__(self, routers: list) -> None:
        if len(routers) < 2:
            raise InputError("a pipeline needs at least 2 stages", fix="split the model first")
        self.routers = routers

    def infer(self, data: Any, *, verify: str = "none", k: int = 2) -> PipelineAnswer:
        answers = []
        current = data
        for r in self.routers:
            ans = r.infer(current, verify=verify, k=k)
            answers.append(ans)
            current = ans.output.tolist()
        return PipelineAnswer(answers[-1].output, answers)
