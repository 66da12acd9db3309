"""A GPU batch-inference pipeline, for planning only (it is never run: this machine has no GPU)."""

import ray


class Classify:
    def __init__(self):
        import torch

        self.model = torch.hub.load("pytorch/vision", "resnet152").to("cuda")

    def __call__(self, batch):
        return batch


ds = ray.data.read_images("s3://bucket/images")
ds = ds.map_batches(Classify, concurrency=1, num_gpus=1, batch_size=32)
ds.write_parquet("s3://bucket/labels")
