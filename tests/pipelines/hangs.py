import time

import ray


def stuck(batch):
    time.sleep(600)
    return batch


ray.data.range(100, override_num_blocks=2).map_batches(stuck).write_parquet("out")
