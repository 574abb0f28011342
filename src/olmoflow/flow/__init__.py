"""The flow runner: flow files, DAG execution with content-addressed caching, lineage, reports.

Public API::

    from olmoflow.flow import load_flow, run_flow, register_stage, StageContext
    spec = load_flow("flows/tiny.yaml", overrides=["pretrain.max_steps=20"])
    result = run_flow(spec, workdir)          # RunResult: .executed, .cached, .ids()

A new stage type is one file: a ``StageConfig``, a function, and its ``register_stage`` entry
(with its ``ReportSection`` and ``ReleaseFiles``); see docs/flow.md.
"""

from olmoflow.flow.registry import (
    STAGES,
    ReleaseFiles,
    ReportSection,
    ResumePoint,
    StageArtifact,
    StageConfig,
    StageContext,
    register_stage,
)
from olmoflow.flow.runner import RunResult, StageFailed, run_flow
from olmoflow.flow.spec import FlowSpec, load_flow, parse_flow

__all__ = ["STAGES", "FlowSpec", "ReleaseFiles", "ReportSection", "ResumePoint", "RunResult", "StageArtifact",
           "StageConfig", "StageContext", "StageFailed", "load_flow", "parse_flow", "register_stage", "run_flow"]
