"""Errors of the imaging layer: stable codes for the API, and the probe's hand-off signal."""
from __future__ import annotations

from pipelines.base import PipelineError


class Undecodable(PipelineError):
    """The bytes claim an image format but cannot be decoded (damaged, lying, or hostile)."""

    code = "UNDECODABLE"


class ImageTooLarge(PipelineError):
    """The header announces more pixels than the configured limit; nothing was decoded."""

    code = "IMAGE_TOO_LARGE"


class ProbeNeedsIsolation(Exception):
    """This format's header can only be read by C code (libheif, libavif, LibRaw).

    Such parsers must not run on untrusted bytes inside the server process: the caller should use
    :func:`pipelines.imaging.isolated.probe_isolated` instead.
    """

    def __init__(self, fmt: str):
        super().__init__(f"reading the {fmt} header needs the isolated probe")
        self.format = fmt
