"""One dataset read by two filters whose outputs are unioned, then zipped with a second source, then looped."""

import ray

base = ray.data.range(600, override_num_blocks=3).map_batches(lambda b: b)
evens = base.filter(lambda r: r["id"] % 2 == 0)
odds = base.filter(lambda r: r["id"] % 2 == 1)
labels = ray.data.range(600, override_num_blocks=3).map(lambda r: {"label": r["id"] % 3})
paired = evens.union(odds).zip(labels)
print("rows", sum(len(b["id"]) for b in paired.iter_batches(batch_size=100)))
