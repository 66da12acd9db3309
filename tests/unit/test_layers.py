"""The layout is the architecture: imports between pipetune's packages point one way, down.

Read from the source (ast), so a new upward import fails here before anyone has to find it by eye. Packages on
one layer (``diagnose`` and ``store``; the bottom modules) do not import each other either.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "pipetune"
LAYERS: tuple[tuple[str, ...], ...] = (  # top first; docs/architecture.md draws the same order
    ("__main__", "cli", "__init__"),
    ("ui",),
    ("report",),
    ("tune",),
    ("plan",),
    ("lint",),
    ("record",),
    ("diagnose", "store"),
    ("settings", "capture", "metrics", "sourcecode"),
    ("model",),
    ("_serde", "errors", "_faces"),
)
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def unit_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipetune.") and not node.level:
            yield node.module.split(".")[1]
        elif isinstance(node, ast.Import):
            yield from (a.name.split(".")[1] for a in node.names if a.name.startswith("pipetune."))


def edges() -> set[tuple[str, str]]:
    found = set()
    for path in SRC.rglob("*.py"):
        here = unit_of(path)
        found |= {(here, there) for there in imports(path) if there != here}
    return found


def test_every_module_has_a_layer() -> None:
    units = {unit_of(p) for p in SRC.rglob("*.py")}
    assert units <= set(RANK), sorted(units - set(RANK))


def test_no_import_runs_up_or_sideways() -> None:
    wrong = sorted(f"{a} -> {b}" for a, b in edges() if RANK[b] <= RANK[a] and a not in LAYERS[0])
    assert wrong == []


def test_other_packages_are_reached_through_their_face() -> None:
    """``from pipetune.diagnose import Facts``, never ``pipetune.diagnose.facts``: modules behind a package's
    ``__init__`` are its own business."""
    behind = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipetune."):
                parts = node.module.split(".")
                if len(parts) > 2 and (SRC / parts[1]).is_dir() and parts[1] != unit_of(path):
                    behind.append(f"{path.relative_to(SRC)}: {node.module}")
    assert behind == []
