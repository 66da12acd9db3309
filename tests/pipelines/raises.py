import os

import ray

# Ray workers do not share the driver's working directory: give them absolute paths.
OUT = os.path.abspath("out")


def explode(batch):
    if batch["id"].max() > 500:
        raise ValueError("bad row in batch")
    return batch


ray.data.range(1000, override_num_blocks=4).map_batches(explode, batch_size=100).write_parquet(OUT)
