"""Lineage graphs: a version's ancestors and descendants, rendered as tree, JSON, DOT or Mermaid.

Each node carries what an auditor needs: weights root, kind (full/LoRA + base), data
batches, job, evaluations (median per eval set) and release status.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from proofmesh.errors import InputError

FORMATS = ("tree", "json", "dot", "mermaid")


@dataclass
class LineageNode:
    id: int
    name: str
    kind: str
    base: int
    parent: int
    weights_root: str
    owner: str
    job_id: int
    data_batches: list[str]
    released: bool
    evaluations: list[dict] = field(default_factory=list)


@dataclass
class Lineage:
    """The connected family of one version: every ancestor and every descendant."""

    focus: int
    nodes: dict[int, LineageNode]

    @property
    def roots(self) -> list[int]:
        return sorted(i for i, n in self.nodes.items() if n.parent not in self.nodes)

    def children(self, vid: int) -> list[int]:
        return sorted(i for i, n in self.nodes.items() if n.parent == vid)

    def to_json(self) -> dict:
        return {"focus": self.focus,
                "versions": [self.nodes[i].__dict__ for i in sorted(self.nodes)]}

    def render(self, fmt: str) -> str:
        if fmt == "json":
            return json.dumps(self.to_json(), indent=2)
        if fmt == "tree":
            return self._tree()
        if fmt == "dot":
            return self._dot()
        if fmt == "mermaid":
            return self._mermaid()
        raise InputError(f"unknown lineage format {fmt!r}", fix=f"use one of {', '.join(FORMATS)}")

    def _label(self, n: LineageNode) -> str:
        kind = f"lora on v{n.base}" if n.kind == "lora" else "full"
        status = "released" if n.released else "unreleased"
        evals = ", ".join(f"{e['metric']}={e['median']:.4f}@set{e['eval_set']}"
                          for e in n.evaluations if e.get("median") is not None)
        parts = [f"v{n.id} {n.name}", kind, n.weights_root[:10] + "…", status]
        if n.job_id:
            parts.append(f"job {n.job_id}")
        if n.data_batches:
            parts.append(f"{len(n.data_batches)} data batch(es)")
        if evals:
            parts.append(evals)
        return " · ".join(parts)

    def _tree(self) -> str:
        lines: list[str] = []

        def walk(vid: int, prefix: str, last: bool, top: bool) -> None:
            mark = "" if top else ("└── " if last else "├── ")
            star = "  ◀" if vid == self.focus else ""
            lines.append(prefix + mark + self._label(self.nodes[vid]) + star)
            kids = self.children(vid)
            for i, k in enumerate(kids):
                walk(k, prefix + ("" if top else ("    " if last else "│   ")), i == len(kids) - 1, False)

        for r in self.roots:
            walk(r, "", True, True)
        return "\n".join(lines)

    def _dot(self) -> str:
        out = ["digraph lineage {", "  rankdir=TB;", '  node [shape=box, fontname="monospace"];']
        for i in sorted(self.nodes):
            n = self.nodes[i]
            style = ', style="bold,filled", fillcolor="#d8f5d0"' if n.released else ""
            label = self._label(n).replace('"', "'").replace(" · ", "\\n")
            out.append(f'  v{i} [label="{label}"{style}];')
        for i in sorted(self.nodes):
            n = self.nodes[i]
            if n.parent in self.nodes:
                out.append(f"  v{n.parent} -> v{i};")
            if n.kind == "lora" and n.base in self.nodes and n.base != n.parent:
                out.append(f'  v{n.base} -> v{i} [style=dashed, label="base"];')
        out.append("}")
        return "\n".join(out)

    def _mermaid(self) -> str:
        out = ["graph TD"]
        for i in sorted(self.nodes):
            label = self._label(self.nodes[i]).replace('"', "'").replace(" · ", "<br/>")
            out.append(f'  v{i}["{label}"]')
        for i in sorted(self.nodes):
            n = self.nodes[i]
            if n.parent in self.nodes:
                out.append(f"  v{n.parent} --> v{i}")
            if n.kind == "lora" and n.base in self.nodes and n.base != n.parent:
                out.append(f"  v{n.base} -.base.-> v{i}")
        released = [f"v{i}" for i in sorted(self.nodes) if self.nodes[i].released]
        if released:
            out.append("  classDef released fill:#d8f5d0,stroke:#2a7;")
            out.append(f"  class {','.join(released)} released")
        return "\n".join(out)


def build(client, version_id: int) -> Lineage:
    """Collect the lineage of ``version_id`` from the chain through ``client``."""
    ids = [version_id] + client.ancestors(version_id) + client.descendants(version_id)
    nodes: dict[int, LineageNode] = {}
    for vid in dict.fromkeys(ids):
        rec = client.version(vid)
        evals = [{"eval_set": e.eval_set, "metric": e.metric, "median": e.median, "finalized": e.finalized,
                  "values": e.values} for e in client.evaluations_of(vid)]
        nodes[vid] = LineageNode(id=vid, name=rec.name, kind=rec.kind, base=rec.base, parent=rec.parent,
                                 weights_root=rec.weights_root, owner=rec.owner, job_id=rec.job_id,
                                 data_batches=rec.data_batches, released=rec.released, evaluations=evals)
    return Lineage(focus=version_id, nodes=nodes)
