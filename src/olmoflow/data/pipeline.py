"""Run a recipe over sharded inputs: segments of map steps split by global steps.

The recipe ``[m1, m2, G1, m3, G2]`` runs as three segments: ``[m1, m2] -> collect(G1)``,
``apply(G1), m3 -> collect(G2)``, ``apply(G2)``. Segment tasks run per shard in parallel (any
executor); each global step's ``decide`` runs once in the driver between segments. Every task writes
its outputs to temp files, renames them, then writes a completion marker holding the run hash, so a
killed run resumes where it stopped and never loses or duplicates documents. Results depend only on
inputs, recipe and seed, never on the worker count or executor.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from olmoflow.data.documents import JsonlWriter, Shard, is_damage, read_jsonl
from olmoflow.data.recipe import Recipe
from olmoflow.data.stats import Stats
from olmoflow.data.steps import Context, GlobalStep, Step
from olmoflow.data.steps.base import Doc
from olmoflow.io import atomic_write_text

WORK = "_work"
OUTPUT_DIRS = ("documents", "attributes", "curation", "removed", "quarantine", WORK)


@dataclass
class Segment:
    """One parallel pass: optionally apply a global step's decision, then run map steps."""

    apply_global: int | None  # index into steps of the global step to apply first
    maps: list[int]  # indices of map steps
    collect_global: int | None  # index of the global step whose summary this pass collects


def plan_segments(steps: list[Step]) -> list[Segment]:
    segs: list[Segment] = []
    cur = Segment(None, [], None)
    for i, s in enumerate(steps):
        if s.kind == "global":
            cur.collect_global = i
            segs.append(cur)
            cur = Segment(i, [], None)
        else:
            cur.maps.append(i)
    segs.append(cur)
    return segs


@dataclass
class RunSpec:
    """Everything a worker needs (picklable): the recipe, the shards, the output dir, the run hash."""

    recipe: dict[str, Any]
    shards: list[dict[str, Any]]
    output: str
    run_hash: str

    @property
    def work(self) -> Path:
        return Path(self.output) / WORK


_STEP_CACHE: dict[str, list[Step]] = {}


def _steps_for(spec: RunSpec) -> list[Step]:
    """Built steps, cached per process so heavy setup (models, indexes) happens once per worker."""
    steps = _STEP_CACHE.get(spec.run_hash)
    if steps is None:
        from olmoflow.data.recipe import load_recipe

        steps = load_recipe(spec.recipe).build()
        _STEP_CACHE.clear()
        _STEP_CACHE[spec.run_hash] = steps
    return steps


def _marker_ok(path: Path, run_hash: str) -> bool:
    try:
        return path.read_text().strip() == run_hash
    except OSError:
        return False


def _write_marker(path: Path, run_hash: str) -> None:
    atomic_write_text(path, run_hash, fsync=False)


def _dump_pickle(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


def _load_pickle(path: Path) -> Any:
    with open(path, "rb") as f:
        return pickle.load(f)


def seg_output(spec: RunSpec, seg: int, shard_name: str) -> Path:
    return spec.work / f"seg{seg}" / f"{shard_name}.jsonl.zst"


def read_intermediate(path: Path) -> Iterator[Doc]:
    for doc, bad in read_jsonl(path, max_doc_bytes=1 << 40):
        if bad is not None:  # our own file: anything wrong here is a bug, not bad input
            raise RuntimeError(f"corrupt intermediate file {path}: {bad}")
        yield doc  # type: ignore[misc]


def _public(doc: Doc) -> Doc:
    return {k: v for k, v in doc.items() if not k.startswith("_") and k != "attributes"}


def curation_record(doc: Doc, steps: list[Step]) -> Doc:
    """The compact per-document curation record (``curation/*.jsonl.gz``, keyed by id) that tracing reads:
    raw input file and line, the steps it passed (and those that skip its source), quality score and
    bucket, duplicate-cluster sizes and upsampling factor."""
    attrs = doc.get("attributes") or {}
    origin = doc.get("_origin") or [None, None]
    rec: Doc = {"id": doc["id"], "raw": {"file": origin[0], "line": origin[1]},
                "steps": [s.name for s in steps if s.applies(doc)]}
    skipped = [s.name for s in steps if not s.applies(doc)]
    if skipped:
        rec["skipped"] = skipped
    quality = {k: attrs[a] for k, a in (("score", "quality_score"), ("bucket", "quality_bucket")) if a in attrs}
    if quality:
        rec["quality"] = quality
    dedup = {k[: -len("_cluster_size")]: v for k, v in attrs.items() if k.endswith("_cluster_size")}
    if dedup:
        rec["dedup"] = dedup
    if "repeat" in attrs:
        rec["upsample"] = attrs["repeat"]
    return rec


def _removed_record(doc: Doc, step: str, reason: str) -> Doc:
    rec = {k: v for k, v in doc.items() if not k.startswith("_")}
    rec["removed_by"] = step
    rec["reason"] = reason
    return rec


def run_segment_task(spec: RunSpec, seg_index: int, shard_index: int) -> dict[str, Any]:
    """Run one segment on one shard; returns its stats (also saved beside the completion marker)."""
    steps = _steps_for(spec)
    segs = plan_segments(steps)
    seg = segs[seg_index]
    last = seg_index == len(segs) - 1
    shard = Shard(**spec.shards[shard_index])
    seg_dir = spec.work / f"seg{seg_index}"
    seg_dir.mkdir(parents=True, exist_ok=True)
    marker = seg_dir / f"{shard.name}.done"
    stats_path = seg_dir / f"{shard.name}.stats.json"
    if _marker_ok(marker, spec.run_hash):
        return json.loads(stats_path.read_text())

    out = Path(spec.output)
    stats = Stats()
    removed_w = JsonlWriter(out / "removed" / f"{shard.name}.seg{seg_index}.jsonl.gz")

    def sink(doc: Doc, step: str, reason: str) -> None:
        removed_w.write(_removed_record(doc, step, reason))

    ctx = Context(stats, sink, seed=int(spec.recipe.get("seed", 0)), workdir=str(spec.work),
                  shard_index=shard_index, n_shards=len(spec.shards))
    writers: list[JsonlWriter] = [removed_w]
    try:
        # 1. source of documents
        if seg_index == 0:
            quarantine_w = JsonlWriter(out / "quarantine" / f"{shard.name}.jsonl.gz")
            writers.append(quarantine_w)

            def source() -> Iterator[Doc]:
                for doc, bad in shard.read(int(spec.recipe["max_doc_bytes"]), origin=True):
                    if bad is not None:
                        stats.global_incr("records_read")
                        stats.global_incr("quarantined")
                        stats.global_incr(f"quarantined:{bad['reason'].split(' ')[0]}")
                        if is_damage(bad):
                            stats.damaged_file(bad)
                        quarantine_w.write(bad)
                        continue
                    stats.global_incr("records_read")
                    if not doc.get("source"):  # type: ignore[union-attr]
                        doc["source"] = shard.source or shard.name  # type: ignore[index]
                    doc.setdefault("_origin", [shard.path, None])  # type: ignore[union-attr]
                    yield doc  # type: ignore[misc]

            docs: Iterator[Doc] = source()
        else:
            docs = read_intermediate(seg_output(spec, seg_index - 1, shard.name))
        # 2. pending global step
        if seg.apply_global is not None:
            g = steps[seg.apply_global]
            assert isinstance(g, GlobalStep)
            decision = _load_pickle(spec.work / f"g{seg.apply_global}" / f"{shard.name}.decision.pkl")
            docs = stats.count_out(g.name, g.apply(stats.count_in(g.name, docs), decision, ctx))
        # 3. map steps
        for i in seg.maps:
            s = steps[i]
            s.ensure_setup()
            docs = stats.count_out(s.name, s.run(stats.count_in(s.name, docs), ctx))
        # 4. sink: final outputs, or intermediate + the next global step's collect
        if last:
            doc_w = JsonlWriter(out / "documents" / f"{shard.name}.jsonl.gz")
            attr_w = JsonlWriter(out / "attributes" / f"{shard.name}.jsonl.gz")
            cur_w = JsonlWriter(out / "curation" / f"{shard.name}.jsonl.gz")
            writers += [doc_w, attr_w, cur_w]
            for d in docs:
                doc_w.write(_public(d))
                attr_w.write({"id": d["id"], "attributes": d.get("attributes", {})})
                if not d.get("_copy"):
                    cur_w.write(curation_record(d, steps))
                if d.get("_copy"):
                    stats.global_incr("extra_copies")
                else:
                    stats.global_incr("kept")
                    q = (d.get("attributes") or {}).get("quality_score")
                    if q is not None:
                        stats.add_histogram("quality_score", {f"{min(int(q * 20), 19) / 20:.2f}": 1})
        else:
            inter_w = JsonlWriter(seg_output(spec, seg_index, shard.name))
            writers.append(inter_w)

            def tee(it: Iterator[Doc]) -> Iterator[Doc]:
                for d in it:
                    inter_w.write(d)
                    yield d

            g = steps[seg.collect_global]  # type: ignore[index]
            assert isinstance(g, GlobalStep)
            g.ensure_setup()
            teed = tee(docs)
            summary = g.collect(teed, ctx)
            for _ in teed:  # drain whatever collect did not consume
                pass
            _dump_pickle(seg_dir / f"{shard.name}.collect.pkl", summary)
    except BaseException:
        for w in writers:
            w.__exit__(RuntimeError, None, None)
        raise
    for w in writers:
        w.close()
    stats_path.write_text(json.dumps(stats.to_dict(), sort_keys=True))
    _write_marker(marker, spec.run_hash)
    return stats.to_dict()


def run_decide_task(spec: RunSpec, seg_index: int) -> dict[str, Any]:
    """Decide the global step collected by ``seg_index`` (driver side); writes one decision per shard."""
    steps = _steps_for(spec)
    seg = plan_segments(steps)[seg_index]
    gi = seg.collect_global
    assert gi is not None
    g = steps[gi]
    assert isinstance(g, GlobalStep)
    gdir = spec.work / f"g{gi}"
    gdir.mkdir(parents=True, exist_ok=True)
    marker = gdir / "decide.done"
    stats_path = gdir / "decide.stats.json"
    if _marker_ok(marker, spec.run_hash):
        return json.loads(stats_path.read_text())
    seg_dir = spec.work / f"seg{seg_index}"
    names = [sh["name"] for sh in spec.shards]
    summaries = [_load_pickle(seg_dir / f"{n}.collect.pkl") for n in names]
    stats = Stats()

    def read_shard(i: int) -> Iterator[Doc]:
        return read_intermediate(seg_output(spec, seg_index, names[i]))

    ctx = Context(stats, None, seed=int(spec.recipe.get("seed", 0)), workdir=str(spec.work),
                  read_shard=read_shard, n_shards=len(names))
    g.ensure_setup()
    decisions = g.decide(summaries, ctx)
    for n, d in zip(names, decisions):
        _dump_pickle(gdir / f"{n}.decision.pkl", d)
    stats_path.write_text(json.dumps(stats.to_dict(), sort_keys=True))
    _write_marker(marker, spec.run_hash)
    return stats.to_dict()


#: step settings naming files a step reads (eval sets, a quality model or its training data)
_FILE_KEYS = ("eval_files", "model", "positive", "negative")


def _recipe_files(recipe: dict[str, Any]) -> list[tuple[int, str, str, int, int]]:
    """(step, key, path, size, mtime) of every file the recipe's steps read, so that editing one in
    place changes the run hash exactly like editing an input document file does."""
    rows = []
    for i, step in enumerate(recipe.get("steps", [])):
        for key in _FILE_KEYS:
            value = step.get(key)
            for p in [value] if isinstance(value, str) else value if isinstance(value, list) else []:
                try:
                    st = os.stat(p)
                    rows.append((i, key, str(p), st.st_size, st.st_mtime_ns))
                except OSError:
                    rows.append((i, key, str(p), -1, -1))
    return rows


class InjectedFailure(RuntimeError):
    """Raised by the test hook ``OLMOFLOW_DATA_FAIL_AFTER=N`` after N shard tasks complete."""


def run_pipeline(
    recipe: Recipe,
    shards: list[Shard],
    output: str | Path,
    executor: Any,
    input_fingerprint: str,
    progress: Callable[[str, int], Any] | None = None,
) -> Stats:
    """Execute ``recipe`` over ``shards`` into ``output``; returns the merged run stats."""
    output = Path(output)
    from olmoflow.config import config_hash

    rec = recipe.to_dict()
    # v: the reader/task-output version; v2 reports damaged (truncated/corrupt) input files, so work
    # left by an older version is not mixed with new results;
    # v3: documents carry their raw file and line (``_origin``) for the curation records
    run_hash = config_hash({"recipe": rec, "inputs": input_fingerprint, "files": _recipe_files(rec), "v": 3})
    work = output / WORK
    run_file = work / "run.json"
    if run_file.exists():
        try:
            old = json.loads(run_file.read_text()).get("run_hash")
        except (OSError, ValueError):
            old = None
        if old != run_hash:  # a different run used this directory: start clean
            for d in OUTPUT_DIRS:
                shutil.rmtree(output / d, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    run_file.write_text(json.dumps({"run_hash": run_hash, "recipe": recipe.to_dict()}, indent=1))
    spec = RunSpec(recipe.to_dict(), [asdict(s) for s in shards], str(output), run_hash)
    steps = recipe.build()
    for s in steps:
        s.prepare(str(work))
    segs = plan_segments(steps)
    fail_after = int(os.environ.get("OLMOFLOW_DATA_FAIL_AFTER", "0") or 0)
    done = [0]

    def on_done() -> None:
        done[0] += 1
        if fail_after and done[0] >= fail_after:
            raise InjectedFailure(f"injected failure after {done[0]} tasks (OLMOFLOW_DATA_FAIL_AFTER)")

    total = Stats()
    for k, seg in enumerate(segs):
        label = "+".join(steps[i].name for i in seg.maps) or "apply"
        if seg.apply_global is not None:
            label = f"{steps[seg.apply_global].name}(apply)" + ("+" + label if seg.maps else "")
        results = executor.map(run_segment_task, [(spec, k, i) for i in range(len(shards))],
                               desc=f"[{k + 1}/{len(segs)}] {label}", on_done=on_done)
        for r in results:
            total.merge(r)
        if seg.collect_global is not None:
            total.merge(run_decide_task(spec, k))
            on_done()
    return total
