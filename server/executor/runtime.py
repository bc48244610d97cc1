"""Per-worker runtime set-up: threads, device, decoder limits. Runs once, inside the worker."""
from __future__ import annotations

import os
from typing import Any


def configure_runtime(config: dict[str, Any]) -> str:
    """Apply thread counts and decoder limits; return the device this worker will use."""
    threads = int(config["threads"])
    # OpenMP reads these when torch/OpenCV load; set them before either is imported.
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)
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
