"""The guide's static recommendation for a recorded pipeline: each stage sized from its operation type alone.

Pure. This is what a careful user gets from the resource allocation matrix without measuring anything more:
the low end of the matrix's ``num_cpus`` range (more parallelism) and the high end of its ``batch_size`` range
(fewer fixed per-batch costs). It is the baseline the tuner has to beat, and ``plan``'s starting point.
"""

from __future__ import annotations

from typing import Any

from pipetune.diagnose import Facts, classify
from pipetune.model import Run, StageKind

_SIZED = (StageKind.TRANSFORM, StageKind.FILTER, StageKind.ACTOR, StageKind.WRITE)


def static_settings(run: Run) -> dict[str, Any]:
    """``{"stages": {index: {knob: value}}, "context": {}}``: the --config form."""
    stages: dict[str, dict[str, Any]] = {}
    kinds = {s.index: s for s in run.stages}
    for row in classify(Facts.of(run)):
        stage = kinds[row.stage]
        if stage.kind not in _SIZED:
            continue
        knobs: dict[str, Any] = {}
        if row.num_cpus is not None:
            knobs["num_cpus"] = row.num_cpus[0]
        if row.batch_size is not None and stage.method == "map_batches":
            knobs["batch_size"] = row.batch_size[1]
        if knobs:
            stages[str(stage.index)] = knobs
    return {"stages": stages, "context": {}}
