"""GPU stages: low utilisation (preprocessing-bound, batch too small, spiky) and CUDA out of memory.

Guide: GPU below 50% -> if CPUs are busy, preprocessing is the bottleneck (lower its num_cpus 0.5 -> 0.25);
if not, the batch is too small (32 -> 64 -> 128); spiky use -> a larger batch. CUDA OOM -> batch_size
64 -> 32 -> 16 -> 8, verified by no more CUDA errors.
"""

from __future__ import annotations

from pipetune.diagnose import thresholds as th
from pipetune.diagnose.facts import Facts, OpType
from pipetune.diagnose.findings import Criterion, Evidence, Finding, Fix, Level
from pipetune.diagnose.rules._common import finding, halved_batch, lead_stages
from pipetune.model import EventKind, Stage

_CUDA_OOM = ("CUDA out of memory", "CUDA error: out of memory", "OutOfMemoryError: CUDA")


def _gpu_stages(facts: Facts) -> list[Stage]:
    return [s for s in facts.run.stages if (s.knobs.num_gpus or 0) > 0]


def check_low_gpu(facts: Facts) -> list[Finding]:
    gpu_stages = _gpu_stages(facts)
    if not gpu_stages or facts.gpu_pct is None or facts.gpu_pct >= th.LOW_GPU_PCT.value:
        return []
    stage = gpu_stages[-1]
    evidence = [Evidence("GPU use", facts.gpu_pct, "%", th.LOW_GPU_PCT.value, th.LOW_GPU_PCT.source)]
    if facts.cpu_pct is not None:
        evidence.append(Evidence("CPU use", facts.cpu_pct, "%", th.BUSY_CPU_PCT.value, th.BUSY_CPU_PCT.source))
    if facts.cpu_pct is not None and facts.cpu_pct >= th.BUSY_CPU_PCT.value:
        return [_preprocessing_bound(facts, stage, evidence)]
    spiky = facts.gpu_cv is not None and facts.gpu_cv > th.SPIKY_GPU_CV.value
    if spiky:
        evidence.append(Evidence("GPU use variation (stddev/mean)", facts.gpu_cv or 0.0, "", th.SPIKY_GPU_CV.value))
    batch = stage.knobs.batch_size or 32
    return [
        finding(
            facts,
            "low-gpu",
            "spiky GPU utilisation" if spiky else "low GPU utilisation: batches too small",
            stage,
            evidence,
            "the GPU waits between small batches while the CPUs are not busy either",
            Fix("batch_size", stage.knobs.batch_size, batch * 2, Level.BATCH, stage.index),
            Criterion("gpu_pct", ">", th.LOW_GPU_PCT.value, "GPU utilisation above 50%"),
            0.7,
        )
    ]


def _preprocessing_bound(facts: Facts, gpu_stage: Stage, evidence: list[Evidence]) -> Finding:
    cpu_stages = [
        s
        for s in lead_stages(facts)
        if s.index < gpu_stage.index
        and facts.stage_type(s) in (OpType.CPU_PREPROCESSING, OpType.FILTERING, OpType.DATA_LOADING)
    ]
    prep = max(cpu_stages, key=lambda s: facts.wall_share(s.index), default=None)
    op = facts.operator_of(prep.index) if prep else None
    fix = Fix("num_cpus", op.num_cpus, op.num_cpus / 2, Level.PARALLELISM, prep.index) if prep and op else None
    return finding(
        facts,
        "low-gpu",
        "low GPU utilisation: CPU preprocessing cannot keep up",
        prep or gpu_stage,
        evidence,
        "the CPUs are busy feeding the GPU stage, which starves",
        fix,
        Criterion("gpu_pct", ">", th.LOW_GPU_PCT.value, "GPU utilisation above 50%"),
        0.7,
    )


def check_gpu_oom(facts: Facts) -> list[Finding]:
    errors = [e for e in facts.run.events_of(EventKind.UDF_ERROR) if is_cuda_oom(e.message + e.detail)]
    if not errors:
        return []
    stage = facts.run.stage(errors[0].stage) if errors[0].stage is not None else None
    batch = stage.knobs.batch_size if stage else None
    fix = Fix("batch_size", batch, halved_batch(batch or 64), Level.BATCH, stage.index) if stage else None
    return [
        finding(
            facts,
            "gpu-oom",
            "GPU out of memory",
            stage,
            [Evidence("CUDA out-of-memory errors", float(len(errors)))],
            "one batch needs more GPU memory than the card has",
            fix,
            Criterion("cuda_errors", "==", 0, "no more CUDA errors"),
            0.95,
        )
    ]


def is_cuda_oom(text: str) -> bool:
    return any(marker in text for marker in _CUDA_OOM)
