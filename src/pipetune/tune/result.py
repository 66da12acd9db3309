"""What a finished study hands back: the best settings, how much they gained, the bound, and the patch."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from pipetune.diagnose import Facts
from pipetune.model import Run
from pipetune.settings import Settings
from pipetune.store import Store
from pipetune.tune.bound import Bound, bound
from pipetune.tune.patch import Patch, patch_script
from pipetune.tune.study import Study, Trial


@dataclass(frozen=True)
class TuneResult:
    study: Study
    best: Settings
    baseline_s: float | None  # median of the baseline's runs
    best_s: float | None  # median of the best settings' runs
    bound: Bound | None
    patch: Patch | None
    reason: str
    ok: bool

    @property
    def speedup(self) -> float | None:
        return self.baseline_s / self.best_s if self.baseline_s and self.best_s else None

    @property
    def trials(self) -> tuple[Trial, ...]:
        return self.study.trials

    def write_config(self, path: Path) -> Path:
        """Write the best settings as a file ``pipetune run --config`` reads."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.best.to_config(), indent=1) + "\n")
        return path


def result_of(study: Study, store: Store) -> TuneResult:
    finished = study.finished or {}
    incumbent = study.incumbent()
    best = incumbent.config if incumbent else study.spec.start
    best_runs = study.runs_of(best)
    base = study.runs_of(study.baseline.config) if study.baseline else []
    best_run = store.load(best_runs[-1].run_id) if best_runs else None
    return TuneResult(
        study=study,
        best=best,
        baseline_s=_median(base),
        best_s=_median(best_runs),
        bound=bound(Facts.of(best_run)) if best_run else None,
        patch=_patch(study, best, best_run),
        reason=str(finished.get("reason", "the study has not finished (resume it with --resume)")),
        ok=bool(finished.get("ok", False)),
    )


def _median(trials: list[Trial]) -> float | None:
    walls = [t.seconds for t in trials if t.seconds]
    return statistics.median(walls) if walls else None


def _patch(study: Study, best: Settings, run: Run | None) -> Patch | None:
    path = Path(study.spec.cwd or ".") / study.spec.script
    if run is None or not path.is_file():
        return None
    patch = patch_script(path.read_text(), study.spec.script, run.stages, best)
    return patch if patch.diff or patch.unplaced else None
