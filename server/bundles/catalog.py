"""Bundles as the rest of the server sees them: manifests joined with what is installed."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from bundles import manifest_paths
from pipelines.registry import Registry
from server.bundles.manifest import Manifest, load_manifests
from server.bundles.store import INSTALLED, NOT_INSTALLED, BundleState, ModelStore


def install_command(name: str) -> str:
    return f"restora bundles install {name}"


class BundleCatalog:
    def __init__(self, manifests: Registry[Manifest], store: ModelStore):
        self.manifests = manifests
        self.store = store

    @classmethod
    def open(cls, models_dir: Path, manifests_dir: Path | None = None) -> "BundleCatalog":
        paths = sorted(manifests_dir.glob("*.toml")) if manifests_dir else manifest_paths()
        return cls(load_manifests(paths), ModelStore(models_dir))

    def get(self, name: str) -> Manifest:
        return self.manifests.get(name)

    def state(self, name: str) -> BundleState:
        if name not in self.manifests:  # a step whose bundle this catalog does not describe
            return BundleState(NOT_INSTALLED)
        return self.store.state(self.manifests.get(name))

    def size(self, name: str) -> int:
        return self.manifests.get(name).size if name in self.manifests else 0

    def has_model(self, bundle: str, model_id: str) -> bool:
        if bundle not in self.manifests:
            return False
        return self.store.model_file(self.manifests.get(bundle), model_id) is not None

    def installed_names(self) -> list[str]:
        return [name for name in self.manifests if self.state(name).status == INSTALLED]

    def describe(self, name: str) -> dict[str, Any]:
        manifest = self.manifests.get(name)
        state = self.store.state(manifest)
        return {
            "name": manifest.name,
            "description": manifest.description,
            "version": manifest.version,
            "status": state.status,
            "installedVersion": state.record.get("version"),
            "size": manifest.size,
            "installedModels": list(state.installed_models),
            "missingModels": list(state.missing_models),
            "problems": list(state.problems),
            "tools": list(manifest.tools),
            "models": [{"id": m.id, "file": m.file, "size": m.display_size, "license": m.license,
                        "sizeExact": m.size is not None} for m in manifest.models],
            "install": install_command(name),
        }

    def describe_all(self) -> list[dict[str, Any]]:
        return [self.describe(name) for name in self.manifests]
