"""Lineage: follow an artifact's input ids back to raw sources.

Artifacts are found by id in the given workdir first, then at the path their consumer recorded
(so lineage crosses workdirs, e.g. a fork started from another run's checkpoint).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from olmoflow.artifacts import find_artifact
from olmoflow.errors import OlmoflowError
from olmoflow.flow.store import COMPLETE, ArtifactStore, find_artifact_root, read_manifest

__all__ = ["Lineage", "build_lineage", "format_dot", "format_text", "resolve_artifact"]


def resolve_artifact(ref: str | Path, workdir: Path | None = None) -> Path:
    """An artifact directory from a path (inside an artifact) or an id / id prefix (>= 4 characters)
    / directory name in ``workdir`` (None: the workdirs of :func:`olmoflow.artifacts.default_workdirs`)."""
    p = Path(ref)
    if p.exists():
        root = find_artifact_root(p)
        if root is None:
            raise OlmoflowError(f"{p}: not inside a complete artifact (no manifest.json + COMPLETE)")
        return root[0]
    if workdir is None:
        return find_artifact(str(ref))
    return ArtifactStore(Path(workdir)).find(str(ref))


@dataclass
class Node:
    id: str
    kind: str  # artifact | external | uri | missing
    label: str
    path: str | None = None
    manifest: dict[str, Any] | None = None
    inputs: list[tuple[str, str]] = field(default_factory=list)  # (input name, node id)
    subpaths: dict[str, str] = field(default_factory=dict)  # input name -> path inside that input's artifact


@dataclass
class Lineage:
    root: str
    nodes: dict[str, Node]

    def sources(self) -> list[Node]:
        """The raw sources: nodes that are not artifacts."""
        return [n for n in self.nodes.values() if n.kind != "artifact"]

    def roots(self) -> list[Node]:
        """Artifacts made from no inputs at all (generated sources such as the demo corpus)."""
        return [n for n in self.nodes.values() if n.kind == "artifact" and not n.inputs]

    def stages(self) -> list[str]:
        return [n.manifest["stage"] for n in self.nodes.values() if n.manifest]


def _index(workdir: Path | None) -> dict[str, Path]:
    if workdir is None:
        return {}
    return {(d / COMPLETE).read_text().strip(): d for d in ArtifactStore(workdir).all()}


def build_lineage(artifact_dir: Path, workdir: Path | None = None) -> Lineage:
    """The DAG of artifacts and sources that ``artifact_dir`` was made from."""
    artifact_dir = Path(artifact_dir).resolve()
    index = _index(workdir)
    if workdir is None:  # the artifact's own workdir is the natural place to look
        index = _index(artifact_dir.parent.parent)
    nodes: dict[str, Node] = {}

    def visit(d: Path) -> str:
        m = read_manifest(d)
        aid = m["id"]
        if aid in nodes:
            return aid
        node = Node(id=aid, kind="artifact", label=f"{m['stage']} ({m['type']})", path=str(d), manifest=m)
        nodes[aid] = node
        for name, inp in (m.get("inputs") or {}).items():
            kind, iid = inp.get("kind"), inp.get("id")
            if inp.get("subpath"):  # e.g. one checkpoint of a training run
                node.subpaths[name] = inp["subpath"]
            if kind == "artifact":
                found = index.get(iid)
                if found is None and inp.get("path"):
                    root = find_artifact_root(Path(inp["path"])) if Path(inp["path"]).exists() else None
                    found = root[0] if root else None
                if found is not None:
                    node.inputs.append((name, visit(found)))
                    continue
                key = f"missing:{iid}"
                nodes.setdefault(key, Node(id=key, kind="missing", path=inp.get("path"),
                                           label=f"artifact {str(iid)[:12]} ({inp.get('stage')}, not found)"))
                node.inputs.append((name, key))
            else:
                key = f"{kind}:{iid}"
                nodes.setdefault(key, Node(id=key, kind=kind or "external", path=inp.get("path") or inp.get("ref"),
                                           label=f"source {inp.get('path') or inp.get('ref')}"))
                node.inputs.append((name, key))
        return aid

    root = visit(artifact_dir)
    return Lineage(root=root, nodes=nodes)


def format_text(lin: Lineage) -> str:
    """An indented tree from the artifact back to its sources; shared ancestors print once."""
    lines: list[str] = []
    shown: set[str] = set()

    def describe(n: Node) -> str:
        if n.kind == "artifact":
            m = n.manifest or {}
            extra = f" fork of {m['fork_origin']['from']}" if m.get("fork_origin") and \
                m["fork_origin"].get("stage") == m.get("stage") else ""
            return f"{n.label} {n.id[:12]} seed={m.get('seed')} config={m.get('config_hash')}{extra}  {n.path}"
        sha = n.id.split(":", 1)[1][:12] if ":" in n.id else ""
        return f"{n.label}" + (f" (sha256 {sha})" if n.kind == "external" else f" [{n.kind}]")

    def walk(nid: str, prefix: str, name: str | None, last: bool, top: bool, sub: str = "") -> None:
        n = lin.nodes[nid]
        branch = "" if top else ("└── " if last else "├── ")
        head = f"{name} <- " if name else ""
        again = nid in shown and n.inputs
        at = f"/{sub}" if sub and n.kind == "artifact" else ""  # the exact path read, e.g. a checkpoint
        lines.append(prefix + branch + head + describe(n) + at + (" (see above)" if again else ""))
        if again:
            return
        shown.add(nid)
        child_prefix = prefix + ("" if top else ("    " if last else "│   "))
        for i, (iname, cid) in enumerate(n.inputs):
            walk(cid, child_prefix, iname, i == len(n.inputs) - 1, False, n.subpaths.get(iname, ""))

    walk(lin.root, "", None, True, True)
    return "\n".join(lines)


def format_dot(lin: Lineage) -> str:
    """Graphviz DOT: sources -> artifacts, edges labelled with the input name."""
    out = ["digraph lineage {", "  rankdir=LR;", '  node [fontname="Helvetica"];']
    for n in lin.nodes.values():
        shape = "box" if n.kind == "artifact" else "note"
        label = n.label if n.kind != "artifact" else f"{n.label}\\n{n.id[:12]}"
        label = label.replace('"', '\\"')
        out.append(f'  "{n.id}" [shape={shape}, label="{label}"];')
    for n in lin.nodes.values():
        for name, cid in n.inputs:
            label = f"{name}: {n.subpaths[name]}" if name in n.subpaths else name
            out.append(f'  "{cid}" -> "{n.id}" [label="{label}"];')
    out.append("}")
    return "\n".join(out)
