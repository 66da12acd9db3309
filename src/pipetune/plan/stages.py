"""The planner's view of a pipeline's stages: measured from a recorded run, or read from the source."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from pipetune.diagnose import Facts, OpType, classify
from pipetune.diagnose import capacity as batch_model
from pipetune.lint import MATERIALIZING, Script, model_load, scan
from pipetune.model import Run
from pipetune.plan.planner import StageIn, Value

_GPU_HINT = re.compile(r"""cuda|num_gpus""")


def from_run(run: Run) -> list[StageIn]:
    facts = Facts.of(run)
    out = []
    for row in classify(facts):
        stage = run.stage(row.stage)
        rate = facts.rate_of(row.stage)
        lead = rate is not None and facts.operator_of(row.stage) is not None and \
            facts.lead_of(facts.operator_of(row.stage)) == row.stage  # type: ignore[arg-type]  # fmt: skip
        out.append(
            StageIn(
                index=row.stage,
                key=row.key,
                op_type=row.op_type,
                actor=stage.knobs.compute == "actors",
                rows=rate.rows if rate else None,
                seconds_per_row=1 / rate.per_slot if rate and lead and rate.per_slot else None,
                cores_per_task=rate.cores_per_task if rate and lead else None,
                batch_from_run=_batch(facts, row.stage, stage.knobs.batch_size) if lead else None,
            )
        )
    return out


def with_loads(measured: list[StageIn], read: list[StageIn]) -> list[StageIn]:
    """A recorded run's stages with what only the source tells: the call by which a UDF loads a model (so
    ``--model`` names it). Matched by key (call order, method, UDF), as both number the script's calls."""
    loads = {s.key: s.loads for s in read if s.loads}
    return [replace(s, loads=loads.get(s.key, s.loads)) for s in measured]


def _batch(facts: Facts, stage: int, batch: int | None) -> Value | None:
    if not batch:
        return None
    proposed = batch_model.sized_batch(facts, stage, batch)
    model = batch_model.batch_model(facts, stage, batch)
    if proposed is None or model is None or proposed <= batch:
        return None
    why = f"measured: {model[1] * 1000:.1f} ms fixed per batch vs {model[2] * 1e6:.1f} us per row at batch_size {batch}"
    return Value(proposed, why)


def from_source(path: Path) -> list[StageIn]:
    script = scan(path.read_text())
    calls = [c for c in script.calls if c.method not in MATERIALIZING]
    return [StageIn(i, f"{i}:{c.method}" + (f":{c.udf}" if c.udf else ""), _op_type(script, c.method, c.udf),
                    c.udf in script.classes, loads=model_load(script, c.udf) or "")
            for i, c in enumerate(calls)]  # fmt: skip


def _op_type(script: Script, method: str, udf: str) -> OpType:
    if method.startswith(("read_", "from_", "range")):
        return OpType.DATA_LOADING
    if method.startswith("write_"):
        return OpType.WRITING
    if method == "filter":
        return OpType.FILTERING
    body = script.classes.get(udf)
    if body is not None:
        return OpType.GPU_INFERENCE if _GPU_HINT.search(script.code(body)) else OpType.CPU_INFERENCE
    return OpType.CPU_PREPROCESSING
