"""Remove and verify installed bundles."""
from __future__ import annotations

from typing import Any

from server.bundles.catalog import BundleCatalog
from server.bundles.verify import digests


class NotInstalled(LookupError):
    def __init__(self, bundle: str):
        super().__init__(f"The {bundle} bundle is not installed.")
        self.bundle = bundle


def remove_bundle(catalog: BundleCatalog, name: str) -> list[str]:
    """Delete the bundle's record, then every file no other installed bundle uses. Returns removed files."""
    manifest = catalog.get(name)
    store = catalog.store
    with store.lock(name):
        record = _installed_record(catalog, name)
        store.remove_record(name)  # first: the bundle is never "installed" with files missing
        in_use = _paths_in_use(catalog)
        removed = []
        for _, _, path in store.recorded_paths(manifest, record):
            if path not in in_use and path.exists():
                path.unlink()
                removed.append(path.name)
                if path.parent != store.files_dir and not any(path.parent.iterdir()):
                    path.parent.rmdir()
    return removed


def _installed_record(catalog: BundleCatalog, name: str) -> dict[str, Any]:
    record = catalog.store.read_record(name)
    if record is None:
        raise NotInstalled(name)
    return record


def _paths_in_use(catalog: BundleCatalog) -> set:
    paths = set()
    for name, record in catalog.store.records().items():
        if name not in catalog.manifests:
            continue
        paths.update(path for _, _, path in catalog.store.recorded_paths(catalog.get(name), record))
    return paths


def verify_bundle(catalog: BundleCatalog, name: str) -> list[dict[str, Any]]:
    """Re-hash every installed file and compare with what was recorded at install; mark drift."""
    manifest = catalog.get(name)
    store = catalog.store
    with store.lock(name):
        record = _installed_record(catalog, name)
        report = _rehash(catalog, manifest, record)
        store.write_record(name, record)
    return report


def _rehash(catalog: BundleCatalog, manifest, record: dict[str, Any]) -> list[dict[str, Any]]:
    store = catalog.store
    report = []
    for model_id, entry, path in store.recorded_paths(manifest, record):
        if not path.is_file():
            report.append({"model": model_id, "status": "missing"})
            entry["drift"] = True
            continue
        found = digests(path)
        ok = found.sha256 == entry.get("sha256") and found.size == entry.get("size")
        entry["drift"] = not ok
        report.append({"model": model_id, "status": "ok" if ok else "drift", "sha256": found.sha256,
                       "recorded": entry.get("sha256"), "verifiedBy": entry.get("verifiedBy")})
    return report
