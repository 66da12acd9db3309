"""Kills its own driver with SIGKILL while the pipeline runs, as the kernel's OOM killer would.

The kill comes a few sample ticks after the first UDF call (seen through a marker file), never on a timer
that starts before Ray does: however slow Ray is to start, the run has been sampled before it dies.
"""

import os
import signal
import threading
import time

import ray

# Ray workers do not share the driver's working directory: give them absolute paths.
OUT = os.path.abspath("out")
STARTED = os.path.abspath("udf_started")


def slow(batch):
    open(STARTED, "w").close()
    time.sleep(0.5)
    return batch


def kill_once_running():
    while not os.path.exists(STARTED):
        time.sleep(0.1)
    time.sleep(3)  # three sample ticks of a running pipeline
    os.kill(os.getpid(), signal.SIGKILL)


threading.Thread(target=kill_once_running, daemon=True).start()
ray.data.range(600, override_num_blocks=60).map_batches(slow, batch_size=10).write_parquet(OUT)
