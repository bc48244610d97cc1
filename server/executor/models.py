"""The worker's model provider: installed bundles → loaded models, each loaded once and kept warm."""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

from pipelines.base import ModelUnavailable
from pipelines.models.loaders import build_loader_registry
from server.bundles.catalog import BundleCatalog, install_command

log = logging.getLogger("restora.models")


class InstalledModels:
    def __init__(self, catalog: BundleCatalog, device: str):
        self.catalog = catalog
        self.device = device
        self.loaders = build_loader_registry()
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
            raise ModelUnavailable(f"No bundle provides the model '{model_id}'.", code="UNKNOWN_MODEL")
        for name, manifest in bundles:
            path = self.catalog.store.model_file(manifest, model_id)
            if path is not None:
                started = time.perf_counter()
                model = self.loaders.get(manifest.model(model_id).loader)(path, self.device)
                log.info("loaded %s from %s in %.1fs", model_id, name, time.perf_counter() - started)
                return model
        name = bundles[0][0]
        raise ModelUnavailable(
            f"The model '{model_id}' is not installed: install the {name} bundle with `{install_command(name)}`.",
            details={"bundle": name, "install": install_command(name)})
