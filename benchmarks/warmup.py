"""What a fresh local Ray makes a script's first run pay, and whether the tuner's warm-up takes it away.

Each round starts a new local Ray (as ``pipetune tune`` does) and runs the script three times in fresh
drivers, recorded; with ``--warmup`` a run stopped by the tuner's own warm-up rule goes first. Compare each
round's first figure with the two after it: a first run slower beyond their spread is a cost the warm-up
must take away (the tuner's baseline would be that first run). Run it alone on an idle machine.

    PYTHONPATH=src .venv/bin/python benchmarks/warmup.py benchmarks/pipelines/model_pool.py --rounds 2
    PYTHONPATH=src .venv/bin/python benchmarks/warmup.py benchmarks/pipelines/model_pool.py --rounds 2 --warmup
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from pipetune.record import Launch, StopRule, record
from pipetune.record._ray_compat import local_head
from pipetune.store.sqlite import SQLiteStore
from pipetune.tune.loop import warm_up_rule


def one(script: Path, address: str, store: SQLiteStore, stop: StopRule | None) -> tuple[float, float]:
    """The run's wall time and when its first execution started (nan where it has none), on the run's clock."""
    with tempfile.TemporaryDirectory() as sandbox:
        env = {"RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
        launch = Launch(script, address=address, sandbox=Path(sandbox), stop=stop, output=Path(sandbox) / "log",
                        extra_env=env)  # fmt: skip
        run = record(launch, store)
    started = run.executions[0].started_t if run.executions else float("nan")
    return run.wall_s or float("nan"), started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("script", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", action="store_true", help="a run stopped by the tuner's warm-up rule first")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "warmup.db")
        for r in range(args.rounds):
            with local_head() as address:
                warm = [one(args.script, address, store, warm_up_rule())] if args.warmup else []
                walls = [one(args.script, address, store, None) for _ in range(3)]
            shown = " ".join(f"{w:.2f} ({w - s:.2f} from its execution's start)" for w, s in walls)
            lead = f"warm-up {warm[0][0]:.2f} s, then " if warm else ""
            first = walls[0][0] - min(w for w, _ in walls[1:])
            after = (walls[0][0] - walls[0][1]) - min(w - s for w, s in walls[1:])
            print(
                f"round {r}: {lead}runs {shown} s (the first less the faster of the others: {first:+.2f} s; "
                f"from the execution's start: {after:+.2f} s)"
            )


if __name__ == "__main__":
    main()
