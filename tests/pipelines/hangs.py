import os
import time

import ray

# Ray workers do not share the driver's working directory: give them absolute paths.
OUT = os.path.abspath("out")


def stuck(batch):
    time.sleep(600)
    return batch


ray.data.range(100, override_num_blocks=2).map_batches(stuck).write_parquet(OUT)
