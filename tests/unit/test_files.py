"""The tuning sandbox for files a script writes itself (record/files.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from pipetune.record.files import FileGuard


def test_paths_under_a_root_map_into_the_sandbox_and_others_do_not(tmp_path: Path) -> None:
    out, box = tmp_path / "out", tmp_path / "box"
    guard = FileGuard(str(box), [str(tmp_path / "cwd")])
    guard.protect(str(out))
    guard.protect("s3://bucket/out")  # remote targets are not local paths: ignored
    assert guard.protected(str(out / "log.txt")) and guard.protected(str(tmp_path / "cwd" / "x"))
    assert not guard.protected(str(tmp_path / "elsewhere")) and not guard.protected(str(tmp_path / "outside"))
    assert not guard.protected(str(box / "files" / "anything"))  # the sandbox itself is never redirected
    (out).mkdir()
    (out / "log.txt").write_text("old\n")
    target = guard.for_write(str(out / "log.txt"), keep_content=True)
    assert target.startswith(str(box)) and Path(target).read_text() == "old\n"  # an append starts from a copy
    assert guard.for_read(str(out / "log.txt")) == target
    assert guard.for_read(str(out / "other.txt")) == str(out / "other.txt")  # not written: the real file


SCRIPT = """
import os, shutil, sys
from pipetune.record import files
out, box = sys.argv[1], sys.argv[2]
guard = files.FileGuard(box, [])
files.install(guard)
guard.protect(out)
with open(os.path.join(out, "log.txt"), "a") as f:
    f.write("trial\\n")
from pathlib import Path
(Path(out) / "manifest.json").write_text("{}")
os.makedirs(os.path.join(out, "sub"), exist_ok=True)
os.remove(os.path.join(out, "keep.txt"))
shutil.rmtree(os.path.join(out, "part"))
os.replace(os.path.join(out, "manifest.json"), os.path.join(out, "m.json"))
print(open(os.path.join(out, "log.txt")).read().strip().replace("\\n", "|"))
print(sorted(guard.redirected) != [])
"""


def test_a_script_appending_beside_its_output_leaves_the_real_files_as_they_were(tmp_path: Path) -> None:
    out, box = tmp_path / "out", tmp_path / "box"
    (out / "part").mkdir(parents=True)
    (out / "log.txt").write_text("user\n")
    (out / "keep.txt").write_text("keep")
    (out / "part" / "0.parquet").write_bytes(b"data")
    before = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    dirs = sorted(p for p in out.rglob("*") if p.is_dir())
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT), str(out), str(box)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["user|trial", "True"]  # the script saw its own append
    after = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert after == before and sorted(p for p in out.rglob("*") if p.is_dir()) == dirs
