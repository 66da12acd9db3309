"""streaming_split(2) read by two consumer threads, as two training workers on one machine would."""

import threading

import ray

ds = ray.data.range(2_000, override_num_blocks=10).map_batches(lambda b: b, batch_size=100)
splits = ds.streaming_split(2, equal=True)
taken = [0, 0]


def consume(index: int) -> None:
    for batch in splits[index].iter_batches(batch_size=50):
        taken[index] += len(batch["id"])


threads = [threading.Thread(target=consume, args=(i,)) for i in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("splits took", taken)
