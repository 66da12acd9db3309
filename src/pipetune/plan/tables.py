"""The guide's sizing tables as data. Every value carries where it comes from, so a plan can cite its row."""

from __future__ import annotations

import re
from dataclasses import dataclass

GUIDE = "guide"


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    source: str  # "guide: <table>, row '<row>'"

    def pick(self, high: bool = True) -> float:
        return self.high if high else self.low


# By hardware configuration (the guide's second matrix).
GPU_CLUSTER = "GPU cluster: concurrency = number of GPUs, batch 32-128, num_cpus 1 per GPU"
CPU_CLUSTER = "CPU cluster: concurrency = CPUs / 4, batch 16-32, num_cpus 4 per actor"
MIXED_CLUSTER = "mixed cluster: CPU stages num_cpus 0.25, GPU stages as on a GPU cluster"
CPU_ACTOR_CPUS = 4.0
MIXED_CPU_STAGE_CPUS = 0.25

# GPU inference batch sizes by GPU memory tier (GB) and model size, at 224x224.
_GPU_BATCH: dict[int, dict[str, tuple[int, int]]] = {
    16: {"small": (128, 256), "medium": (64, 128), "large": (32, 64)},
    24: {"small": (256, 512), "medium": (128, 256), "large": (64, 128)},
    40: {"small": (512, 1024), "medium": (256, 512), "large": (128, 256)},  # "512+": 1024 as its top
}
_GPU_MEMORY_GB = {
    "t4": 16, "v100": 16, "a10": 24, "a10g": 24, "l4": 24, "rtx4090": 24, "a100": 40, "a100-80": 80, "a6000": 48,
    "l40s": 48, "h100": 80, "h200": 141,
}  # fmt: skip
_MODEL_SIZE = {
    "small": ("resnet18", "resnet34", "resnet50", "mobilenet", "efficientnet_b0", "minilm", "distilbert", "vit-s"),
    "medium": ("resnet101", "resnet152", "efficientnet", "vit-b", "bert-base", "convnext"),
    "large": ("vit-l", "vit-h", "bert-large", "clip-l", "llama", "sam"),
}
_RESOLUTION_DIVISOR = {224: 1, 448: 4, 512: 5, 1024: 16}

# CPU inference batch sizes by RAM per worker task (GB).
_CPU_BATCH = ((4, 8, (4, 16)), (8, 16, (16, 32)), (16, 32, (32, 64)), (32, float("inf"), (64, 128)))


def gpu_memory_gb(model: str) -> int | None:
    key = model.lower().replace("nvidia", "").replace(" ", "").strip("-")
    for name in sorted(_GPU_MEMORY_GB, key=len, reverse=True):
        if key.startswith(name):
            return _GPU_MEMORY_GB[name]
    return None


def model_size(model: str | None) -> tuple[str, str]:
    """(size class, why): small / medium / large as the guide's batch table names them."""
    if not model:
        return "medium", "no --model given: assumed a medium model (ResNet152 class)"
    name = model.lower()
    for size in ("large", "medium", "small"):
        if any(name.startswith(k) or k in name for k in _MODEL_SIZE[size]):
            return size, f"{model} is a {size} model in the guide's batch table"
    return "medium", f"{model} is not in the table: assumed medium"


def gpu_batch(memory_gb: float, size: str) -> Range:
    tier = max((t for t in _GPU_BATCH if t <= memory_gb), default=16)
    low, high = _GPU_BATCH[tier][size]
    label = {16: "16 GB (T4)", 24: "24 GB (A10G)", 40: "40 GB (A100)"}[tier]
    return Range(low, high, f"{GUIDE}: GPU inference batch sizes, row {label}, {size} models")


def resolution_divisor(pixels: int | None) -> tuple[float, str]:
    if not pixels or pixels <= 224:
        return 1.0, ""
    if pixels in _RESOLUTION_DIVISOR:
        return float(_RESOLUTION_DIVISOR[pixels]), f"{pixels}x{pixels} -> divide by {_RESOLUTION_DIVISOR[pixels]}"
    divisor = round((pixels / 224) ** 2)  # the guide's divisors follow the pixel count (448: 4, 1024: ~16-20)
    return float(divisor), f"{pixels}x{pixels} -> divide by {divisor} (pixel count against 224x224)"


def cpu_batch(ram_per_worker_gb: float) -> Range:
    for low_gb, high_gb, (low, high) in _CPU_BATCH:
        if ram_per_worker_gb < high_gb:
            row = f"{low_gb}-{high_gb:g} GB" if high_gb != float("inf") else f"{low_gb}+ GB"
            if ram_per_worker_gb < low_gb:
                row = f"{low_gb}-{high_gb:g} GB (the smallest row; this worker has {ram_per_worker_gb:.1f} GB)"
            return Range(low, high, f"{GUIDE}: CPU inference batch sizes by RAM per worker, row {row}")
    raise AssertionError("unreachable: the last row has no upper bound")


def parse_gpu_name(text: str) -> str:
    return re.sub(r"[^a-z0-9-]", "", text.lower())
