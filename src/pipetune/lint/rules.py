"""The production checklist as static rules over a script. Each rule is ``check(script, gpus) -> findings``.

Contract of a rule: pure (the script's source and the GPU count in, findings out); one finding per offending
call, at the call's line; the message says why and what to write instead; a fix only where applying it cannot
change what the pipeline computes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import libcst as cst

from pipetune.lint.findings import Edit, LintFinding
from pipetune.lint.scan import MATERIALIZING, UDF_METHODS, DataCall, Script

Rule = Callable[[Script, int | None], Iterator[LintFinding]]
_HEAVY_LOAD = re.compile(
    r"\b(from_pretrained|load_model|SentenceTransformer|torch\.(?:hub\.)?load|joblib\.load|pickle\.load|pipeline|"
    r"tf\.keras\.models\.load_model|onnxruntime\.InferenceSession|AutoModel\w*)\s*\("
)
_GPU_HINT = re.compile(r"""cuda|device\s*=\s*["']gpu""")
_COLUMNAR = ("read_parquet", "read_delta", "read_iceberg", "read_lance", "read_bigquery")


def read_without_columns(script: Script, gpus: int | None) -> Iterator[LintFinding]:
    """PT001: a columnar read of every column when the pipeline later keeps only some of them."""
    pruning = [c for c in script.calls if c.method in ("select_columns", "drop_columns")]
    for call in script.calls:
        if call.method in _COLUMNAR and "columns" not in call.keywords and pruning:
            prune = pruning[0]
            fix = _columns_fix(script, call, prune)
            yield LintFinding(
                "PT001", "read-without-columns", call.line, call.col,
                f"{call.method} reads every column, but line {prune.line} {prune.method.replace('_', ' ')}: pass "
                "columns=[...] to the read so unused columns are never loaded (often 60-95% less I/O)", fix,
            )  # fmt: skip


def _columns_fix(script: Script, read: DataCall, prune: DataCall) -> Edit | None:
    """Safe only when the select comes right after the read: nothing in between can use other columns."""
    after = [c for c in script.calls if c.line > read.line]
    if prune.method != "select_columns" or not after or after[0] is not prune or prune.first is None:
        return None
    return Edit("add-keyword", read.line, read.method, "columns", script.code(prune.first))


def late_filter(script: Script, gpus: int | None) -> Iterator[LintFinding]:
    """PT002: a filter after an expensive transform, on columns that transform did not create."""
    for i, call in enumerate(script.calls):
        if call.method != "filter":
            continue
        before = [c for c in script.calls[:i] if c.method in ("map", "map_batches", "flat_map")]
        used = _columns_read(script, call)
        made = {col for c in before for col in _columns_written(script, c)}
        if before and used and not used & made:
            yield LintFinding(
                "PT002", "late-filter", call.line, call.col,
                f"this filter on {', '.join(sorted(used))} runs after {before[0].method}({before[0].udf}) at line "
                f"{before[0].line}, which does not make those columns: filter right after the read so the "
                "transform sees fewer rows",
            )  # fmt: skip


def model_load(script: Script, udf: str) -> str | None:
    """The call by which a UDF (a function or a class) loads a model or other heavy state, if it does: the one
    judgement lint (PT003) and the planner (an inference stage) share."""
    body = script.functions.get(udf) or script.classes.get(udf)
    match = _HEAVY_LOAD.search(script.code(getattr(body, "body", body))) if body is not None else None
    return match.group(1) if match else None


def heavy_state_in_function(script: Script, gpus: int | None) -> Iterator[LintFinding]:
    """PT003: a function UDF that loads a model (or other heavy state) on every call."""
    for call in script.calls:
        loaded = model_load(script, call.udf) if call.method in UDF_METHODS and call.udf in script.functions else None
        if loaded:
            yield LintFinding(
                "PT003", "heavy-state-per-batch", call.line, call.col,
                f"{call.udf}() calls {loaded}(...) on every batch: move the loading into a class's __init__ "
                f"and pass the class (with concurrency=N) so each actor loads it once",
            )  # fmt: skip


def stage_without_num_cpus(script: Script, gpus: int | None) -> Iterator[LintFinding]:
    """PT004 / PT005: every stage says what it needs; a GPU stage says num_gpus and batch_size too."""
    for call in script.calls:
        if call.method not in UDF_METHODS:
            continue
        if not _sets(script, call, "num_cpus"):
            yield LintFinding(
                "PT004", "stage-without-num-cpus", call.line, call.col,
                f"{call.method}({call.udf}) does not set num_cpus (Ray reserves 1 CPU per task): set it from the "
                "operation type (loading 0.025-0.1, filtering 0.1-0.25, preprocessing 0.25-0.5, CPU inference "
                "2-4); the fix writes today's default explicitly",
                Edit("add-keyword", call.line, call.method, "num_cpus", "1"),
            )  # fmt: skip
        if _uses_gpu(script, call):
            missing = [k for k in ("num_gpus", "batch_size") if not _sets(script, call, k)]
            if missing:
                yield LintFinding(
                    "PT005", "gpu-stage-incomplete", call.line, call.col,
                    f"{call.udf} runs on a GPU but the call sets no {' or '.join(missing)}: without num_gpus Ray "
                    "may place it where there is no GPU; batch_size should fill the GPU's memory (32-128 to start)",
                )  # fmt: skip


def materialize_mid_pipeline(script: Script, gpus: int | None) -> Iterator[LintFinding]:
    """PT006: count/show/schema/take/materialize before the pipeline's last transform or write."""
    last_stage = max((c.line for c in script.calls if c.method not in MATERIALIZING), default=0)
    for call in script.calls:
        if call.method in MATERIALIZING and call.line < last_stage:
            fix = None
            if call.statement_discards and call.method in ("count", "schema", "materialize"):
                fix = Edit("remove-statement", call.line, call.method)  # its result is never used
            yield LintFinding(
                "PT006", "materialize-mid-pipeline", call.line, call.col,
                f"{call.method}() runs the pipeline up to here before the rest of it is built: the data is read "
                "twice (or held in memory); drop it or move it after the write",
                fix,
            )  # fmt: skip


def gpu_concurrency(script: Script, gpus: int | None) -> Iterator[LintFinding]:
    """PT007: a GPU stage's pool size that does not match the GPUs there are."""
    if not gpus:
        return
    for call in script.calls:
        per = _literal_number(call.arg("num_gpus"))
        size = _literal_number(call.arg("concurrency"))
        if per and size is not None and int(size) != int(gpus / per):
            yield LintFinding(
                "PT007", "gpu-concurrency-mismatch", call.line, call.col,
                f"concurrency={size:g} with num_gpus={per:g} uses {size * per:g} of {gpus} GPUs: set "
                f"concurrency={int(gpus / per)} (one actor per GPU share)",
            )  # fmt: skip


def no_error_policy(script: Script, gpus: int | None) -> Iterator[LintFinding]:
    """PT008: no max_errored_blocks: one bad block fails a long job (or errors pass unnoticed)."""
    if "max_errored_blocks" in script.context_fields or not script.calls:
        return
    first = script.calls[0]
    yield LintFinding(
        "PT008", "no-error-policy", first.line, first.col,
        "the script sets no DataContext max_errored_blocks: decide how many bad blocks a run may skip "
        "(the fix writes Ray's default, 0, explicitly; raise it for large data with known bad records)",
        Edit("insert-context", name="max_errored_blocks", code="0"),
    )  # fmt: skip


def row_udf(script: Script, gpus: int | None) -> Iterator[LintFinding]:
    """PT009: a row-at-a-time lambda where an expression or map_batches would do."""
    for call in script.calls:
        if call.udf != "<lambda>" or call.method not in ("map", "filter", "flat_map"):
            continue
        expr = _as_expression(script, call) if call.method == "filter" else None
        hint = "write it as an expression: filter(expr=col(...) > ...)" if call.method == "filter" else (
            "use map_batches with a vectorised function: one call per batch, not per row"
        )  # fmt: skip
        fix = Edit("filter-expr", call.line, call.method, code=expr) if expr else None
        yield LintFinding(
            "PT009", "row-udf", call.line, call.col,
            f"{call.method}(lambda ...) calls Python once per row: {hint}", fix,
        )  # fmt: skip


RULES: tuple[Rule, ...] = (
    read_without_columns,
    late_filter,
    heavy_state_in_function,
    stage_without_num_cpus,
    materialize_mid_pipeline,
    gpu_concurrency,
    no_error_policy,
    row_udf,
)


# -- helpers ----------------------------------------------------------------------------------------------


def _sets(script: Script, call: DataCall, knob: str) -> bool:
    if knob in call.keywords:
        return True
    remote = call.arg("ray_remote_args")
    return remote is not None and f'"{knob}"' in script.code(remote).replace("'", '"')


def _uses_gpu(script: Script, call: DataCall) -> bool:
    if _literal_number(call.arg("num_gpus")):
        return True
    body = script.classes.get(call.udf) or script.functions.get(call.udf)
    return body is not None and bool(_GPU_HINT.search(script.code(body)))


def _literal_number(expr: cst.BaseExpression | None) -> float | None:
    if isinstance(expr, (cst.Integer, cst.Float)):
        return float(expr.evaluated_value)
    return None


_SUBSCRIPT = re.compile(r"""\w+\[\s*["'](\w+)["']\s*\]""")


def _columns_read(script: Script, call: DataCall) -> set[str]:
    fn = call.first
    if isinstance(fn, cst.Lambda):
        return set(_SUBSCRIPT.findall(script.code(fn.body)))
    body = script.functions.get(call.udf)
    return set(_SUBSCRIPT.findall(script.code(body))) if body else set()


def _columns_written(script: Script, call: DataCall) -> set[str]:
    body = script.functions.get(call.udf) or script.classes.get(call.udf)
    if body is None:
        return {"*"}  # unknown UDF: assume it may make anything
    code = script.code(body)
    assigned = re.findall(r"""\w+\[\s*["'](\w+)["']\s*\]\s*=""", code)
    returned = re.findall(r"""["'](\w+)["']\s*:""", code)  # keys of a dict the UDF builds and returns
    return {*assigned, *returned}


_COMPARE = re.compile(r"""^\s*\w+\[\s*["'](\w+)["']\s*\]\s*(==|!=|<=|>=|<|>)\s*(-?[\d.]+|["'][^"']*["'])\s*$""")


def _as_expression(script: Script, call: DataCall) -> str | None:
    """``lambda r: r["a"] > 0 and r["b"] == "x"`` -> ``(col("a") > 0) & (col("b") == "x")``; else None."""
    fn = call.first
    if not isinstance(fn, cst.Lambda) or len(fn.params.params) != 1:
        return None
    parts = re.split(r"\s+and\s+", script.code(fn.body).strip())
    terms = [_COMPARE.match(p) for p in parts]
    if not all(terms):
        return None
    rendered = [f'(col("{m.group(1)}") {m.group(2)} {m.group(3)})' for m in terms if m]
    return " & ".join(rendered) if len(rendered) > 1 else rendered[0][1:-1]
