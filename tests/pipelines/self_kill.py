"""Kills its own driver with SIGKILL while the pipeline runs, as the kernel's OOM killer would."""

import os
import signal
import threading
import time

import ray

# Ray workers do not share the driver's working directory: give them absolute paths.
OUT = os.path.abspath("out")


def slow(batch):
    time.sleep(0.5)
    return batch


def kill_later():
    time.sleep(4)
    os.kill(os.getpid(), signal.SIGKILL)


threading.Thread(target=kill_later, daemon=True).start()
ray.data.range(400, override_num_blocks=40).map_batches(slow, batch_size=10).write_parquet(OUT)
