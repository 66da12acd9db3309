"""What a script does with Ray Data, read from its source alone (libcst): no import, no Ray.

A call is a Ray Data call when its receiver is a dataset: a ``ray.data.read_*`` / ``from_*`` / ``range*`` call,
a variable bound to one, or a dataset method's result. Calls come out in source order, which for the usual
``ds = ds.method(...)`` style is pipeline order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

DATASET_METHODS = (
    "map", "map_batches", "flat_map", "filter", "add_column", "with_column", "drop_columns", "select_columns",
    "rename_columns", "repartition", "random_shuffle", "sort", "union", "zip", "join", "limit", "groupby",
    "randomize_block_order", "materialize",
)  # fmt: skip
MATERIALIZING = ("count", "show", "schema", "take", "take_all", "take_batch", "materialize", "to_pandas")
UDF_METHODS = ("map", "map_batches", "flat_map", "filter")


@dataclass(frozen=True)
class DataCall:
    method: str
    line: int
    col: int
    node: cst.Call
    keywords: frozenset[str]
    udf: str  # the name of the function or class passed first, "" for none, "<lambda>" for a lambda
    statement_discards: bool = False  # the call is a whole expression statement: its result is unused

    def arg(self, name: str) -> cst.BaseExpression | None:
        return next((a.value for a in self.node.args if a.keyword and a.keyword.value == name), None)

    @property
    def first(self) -> cst.BaseExpression | None:
        return self.node.args[0].value if self.node.args and not self.node.args[0].keyword else None


@dataclass
class Script:
    module: cst.Module
    calls: list[DataCall] = field(default_factory=list)
    functions: dict[str, cst.FunctionDef] = field(default_factory=dict)
    classes: dict[str, cst.ClassDef] = field(default_factory=dict)
    context_fields: set[str] = field(default_factory=set)  # DataContext fields the script sets
    imports_line: int = 0  # last line of the module's leading imports

    def code(self, node: cst.CSTNode) -> str:
        return self.module.code_for_node(node)


def scan(source: str) -> Script:
    module = cst.parse_module(source)
    visitor = _Visitor(module)
    MetadataWrapper(module).visit(visitor)
    return visitor.script


class _Visitor(cst.CSTVisitor):
    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, module: cst.Module) -> None:
        super().__init__()
        self.script = Script(module)
        self.datasets: set[str] = set()
        self._discarded: set[int] = set()

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.script.functions.setdefault(node.name.value, node)

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.script.classes.setdefault(node.name.value, node)

    def visit_Expr(self, node: cst.Expr) -> None:
        if isinstance(node.value, cst.Call):
            self._discarded.add(id(node.value))

    def visit_Assign(self, node: cst.Assign) -> None:
        targets = [t.target for t in node.targets]
        if self._is_dataset(node.value):
            self.datasets.update(t.value for t in targets if isinstance(t, cst.Name))
        for t in targets:  # ray.data.DataContext.get_current().FIELD = value, or ctx.FIELD = value
            if isinstance(t, cst.Attribute) and "context" in self.script.code(t.value).lower():
                self.script.context_fields.add(t.attr.value)

    def leave_Call(self, node: cst.Call) -> None:  # after its receiver: chains come out in pipeline order
        func = node.func
        if not isinstance(func, cst.Attribute):
            return
        method = func.attr.value
        known = method in DATASET_METHODS or method in MATERIALIZING or method.startswith("write_")
        if (known and self._is_dataset(func.value)) or self._is_source(node):
            self._add(node, method)

    def _add(self, node: cst.Call, method: str) -> None:
        pos = self.get_metadata(PositionProvider, node)
        keywords = frozenset(a.keyword.value for a in node.args if a.keyword)
        takes_udf = method in UDF_METHODS and node.args and not node.args[0].keyword
        udf = _udf_name(node.args[0].value) if takes_udf else ""
        discards = id(node) in self._discarded
        self.script.calls.append(DataCall(method, pos.start.line, pos.start.column, node, keywords, udf, discards))

    def _is_source(self, node: cst.CSTNode) -> bool:
        if not isinstance(node, cst.Call) or not isinstance(node.func, cst.Attribute):
            return False
        name = node.func.attr.value
        where = self.script.code(node.func.value)
        return where in ("ray.data", "data", "rd") and name.startswith(("read_", "from_", "range"))

    def _is_dataset(self, expr: cst.BaseExpression) -> bool:
        if isinstance(expr, cst.Name):
            return expr.value in self.datasets
        if self._is_source(expr):
            return True
        if isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute):
            return expr.func.attr.value in DATASET_METHODS and self._is_dataset(expr.func.value)
        return False


def _udf_name(expr: cst.BaseExpression) -> str:
    if isinstance(expr, cst.Lambda):
        return "<lambda>"
    if isinstance(expr, cst.Name):
        return expr.value
    if isinstance(expr, cst.Attribute):
        return expr.attr.value
    return ""
