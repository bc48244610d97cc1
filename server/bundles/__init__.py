"""Installable model bundles: manifests, the on-disk model store, the installer."""
