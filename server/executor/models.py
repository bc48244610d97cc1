"""The worker's model provider: installed bundles → loaded models, each loaded once and kept warm.

Models that no bundle lists but the package ships (the damage detector) come from the packaged
loaders. The provider also sizes torch's thread pool to the worker's share of the cores before
its first load: every torch network a step runs comes through here.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

from pipelines.base import ModelUnavailable
from pipelines.models.loaders import PACKAGED, PackagedModels, build_loader_registry, use_torch_threads
from pipelines.models.precision_cache import PrecisionCache
from server.bundles.catalog import BundleCatalog, install_command

log = logging.getLogger("restora.models")


class InstalledModels:
    def __init__(self, catalog: BundleCatalog, device: str, threads: int | None = None,
                 precision_cache: PrecisionCache | None = None):
        self.catalog = catalog
        self.device = device
        self.threads = threads
        self.loaders = build_loader_registry(precision_cache)
        self.packaged = PackagedModels(device, threads)
        self._loaded: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, model_id: str) -> Any:
        with self._lock:
            if model_id not in self._loaded:
                self._loaded[model_id] = self._load(model_id)
            return self._loaded[model_id]

    def _load(self, model_id: str) -> Any:
        bundles = [m for m in self.catalog.manifests.items() if any(s.id == model_id for s in m[1].models)]
        if not bundles:
            if model_id in PACKAGED:
                return self.packaged.get(model_id)
            raise ModelUnavailable(f"No bundle provides the model '{model_id}'.", code="UNKNOWN_MODEL")
        for name, manifest in bundles:
            path = self.catalog.store.model_file(manifest, model_id)
            if path is not None:
                use_torch_threads(self.threads)
                started = time.perf_counter()
                model = self.loaders.get(manifest.model(model_id).loader)(path, self.device)
                log.info("loaded %s from %s in %.1fs", model_id, name, time.perf_counter() - started)
                return model
        name = bundles[0][0]
        raise ModelUnavailable(
            f"The model '{model_id}' is not installed: install the {name} bundle with `{install_command(name)}`.",
            details={"bundle": name, "install": install_command(name)})
