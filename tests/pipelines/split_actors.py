"""streaming_split(2) handed to two actors, each looping over its split as a training worker would."""

import time

import ray


def slow(batch: dict) -> dict:
    time.sleep(0.02)  # a preprocessing stage the loops wait for
    return batch


ds = ray.data.range(4_000, override_num_blocks=20).map_batches(slow, batch_size=100)
splits = ds.streaming_split(2, equal=True)


@ray.remote(num_cpus=0)
class Worker:
    def train(self, split: ray.data.DataIterator) -> int:
        rows = 0
        for batch in split.iter_batches(batch_size=50, prefetch_batches=1):
            rows += len(batch["id"])
        return rows


workers = [Worker.remote() for _ in splits]
print("splits took", ray.get([w.train.remote(s) for w, s in zip(workers, splits, strict=True)]))
