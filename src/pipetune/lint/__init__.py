"""The production checklist on the code: static rules over the script's source (libcst), and the checklist
that joins them with what a recorded run measured.

The face of the package: ``lint_file`` / ``lint_source`` for the rules, ``checklist`` for the nine items,
``scan`` for the Ray Data calls a script makes (the planner reads them too).
"""

from pipetune.lint.checklist import Item, State, checklist
from pipetune.lint.engine import LintResult, lint_file, lint_source
from pipetune.lint.findings import Edit, LintFinding
from pipetune.lint.rules import model_load
from pipetune.lint.scan import MATERIALIZING, DataCall, Script, scan

__all__ = [
    "MATERIALIZING",
    "DataCall",
    "Edit",
    "Item",
    "LintFinding",
    "LintResult",
    "Script",
    "State",
    "checklist",
    "lint_file",
    "lint_source",
    "model_load",
    "scan",
]
