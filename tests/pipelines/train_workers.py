"""Ray Train: two workers each loop over their shard (``get_dataset_shard``), as a data-parallel training job does.

Ray Train (V2) makes the shards in its own actor, not in this driver: the dataset carries pipetune there.
"""

import os
import time

import ray
import ray.train
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer


def slow(batch: dict) -> dict:
    time.sleep(0.02)  # the preprocessing the workers wait for
    return batch


def train_loop(config: dict) -> None:
    shard = ray.train.get_dataset_shard("train")
    rows = 0
    for batch in shard.iter_batches(batch_size=50):
        rows += len(batch["id"])
    ray.train.report({"rows": rows})


ds = ray.data.range(4_000, override_num_blocks=20).map_batches(slow, batch_size=100)
trainer = TorchTrainer(
    train_loop,
    scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5}),
    run_config=RunConfig(storage_path=os.path.abspath("results")),
    datasets={"train": ds},
)
print("trained:", trainer.fit().metrics)
