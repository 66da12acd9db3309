"""Runs a script the way ``pipetune run``'s child does (runpy, same argv), without any recording,
and writes its wall time to the file named by $PIPETUNE_BENCH_OUT."""

import os
import runpy
import sys
import time

script, *args = sys.argv[1:]
sys.argv = [script, *args]
sys.path[0] = os.path.dirname(os.path.abspath(script))
start = time.perf_counter()
runpy.run_path(script, run_name="__main__")
elapsed = time.perf_counter() - start
with open(os.environ["PIPETUNE_BENCH_OUT"], "w") as out:
    out.write(f"{elapsed}\n")
