"""Per-worker runtime set-up: threads, device, decoder limits. Runs once, inside the worker."""
from __future__ import annotations

from typing import Any


def configure_runtime(config: dict[str, Any]) -> str:
    """Apply thread counts and decoder limits; return the device this worker will use.

    The thread environment (OMP_NUM_THREADS and the like) is not set here: numpy and OpenCV are
    loaded before this runs, so the pool puts it in the worker's environment when it starts it.
    torch's pool is sized by the worker's model provider before its first load (importing torch
    here would slow every worker's start, and only models use it).
    """
    threads = int(config["threads"])
    import cv2
    from PIL import Image

    cv2.setNumThreads(threads)
    # Pillow's decompression-bomb guard stays on, at least as strict as our own pixel limit allows.
    Image.MAX_IMAGE_PIXELS = max(int(config.get("maxPixels", 0)), Image.MAX_IMAGE_PIXELS or 0)
    return resolve_device(str(config.get("device", "auto")), int(config.get("index", 0)))


def resolve_device(spec: str, index: int) -> str:
    """auto → the worker's GPU when CUDA is usable (workers spread over GPUs), else cpu."""
    if spec == "cpu":
        return "cpu"
    import torch

    if spec == "auto":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return f"cuda:{index % count}" if count else "cpu"
    if not torch.cuda.is_available():
        raise RuntimeError(f"device {spec} was requested but CUDA is not available")
    return spec
