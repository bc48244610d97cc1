"""Bundle manifests (data): one TOML file per installable model bundle."""
from __future__ import annotations

from pathlib import Path

MANIFEST_DIR = Path(__file__).resolve().parent


def manifest_paths() -> list[Path]:
    return sorted(MANIFEST_DIR.glob("*.toml"))
