"""What a script writes itself beside its outputs during a trial is put back afterwards (record/files.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from pipetune.record import files

SCRIPT = """
import os, shutil, sys
from pathlib import Path
from pipetune.record import files
out, box, data = sys.argv[1], sys.argv[2], sys.argv[3]
journal = files.Journal(box)
files.install(journal)
with open(os.path.join(out, "log.txt"), "a") as f:   # before the write_* call names ``out``
    f.write("trial\\n")
os.makedirs(os.path.join(data, "cache"), exist_ok=True)  # the script's own working files: not outputs
(Path(data) / "cache" / "marker").write_text("made")
journal.protect(out)                                  # the write_* call
(Path(out) / "manifest.json").write_text("{}")
os.makedirs(os.path.join(out, "sub"), exist_ok=True)
os.makedirs(os.path.join(out, "sub"), exist_ok=True)  # a second time: the directory is really there
os.remove(os.path.join(out, "keep.txt"))
shutil.rmtree(os.path.join(out, "part"))
os.replace(os.path.join(out, "manifest.json"), os.path.join(out, "m.json"))
print(open(os.path.join(out, "log.txt")).read().strip().replace("\\n", "|"))
"""


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


def test_a_trial_leaves_the_outputs_as_they_were_and_the_rest_as_the_script_left_it(tmp_path: Path) -> None:
    out, box, data = tmp_path / "out", tmp_path / "box", tmp_path / "data"
    (out / "part").mkdir(parents=True)
    (out / "log.txt").write_text("user\n")
    (out / "keep.txt").write_text("keep")
    (out / "part" / "0.parquet").write_bytes(b"data")
    before = snapshot(out)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT), str(out), str(box), str(data)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["user|trial"]  # the script saw its own append, as in a normal run
    assert snapshot(out) != before  # until the trial ends
    restored = files.restore(box)
    assert snapshot(out) == before  # every byte and entry of the outputs as it was
    assert str(out / "log.txt") in restored and str(data / "cache" / "marker") not in restored
    assert (data / "cache" / "marker").read_text() == "made"  # not an output: kept, as a normal run would
    assert not list(tmp_path.glob("out/.pipetune-kept-*"))  # the tree moved aside went back


def test_nothing_journalled_restores_nothing(tmp_path: Path) -> None:
    assert files.restore(tmp_path) == []
