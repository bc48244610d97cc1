"""Parameters every tool shares: the output format and its quality."""
from __future__ import annotations

from pipelines.imaging.encode import WRITABLE as OUTPUT_FORMATS
from pipelines.params import Param

# The photo-restoration bundle's models the face step loads (GFPGAN only when a face is found).
FACE_MODELS = ("gfpgan-v1.4", "retinaface-resnet50", "parsenet")
COLOR_MODELS = ("ddcolor-config", "ddcolor-weights")  # one model directory: config + weights

OUTPUT_FORMAT_PARAM = Param("outputFormat", "string", None, "Output format; default: the input's format where "
                            "it can be written, else PNG.", choices=OUTPUT_FORMATS)
OUTPUT_PARAMS = (
    OUTPUT_FORMAT_PARAM,
    Param("quality", "integer", None, "Quality for lossy output formats (default 95 for JPEG/WebP, 80 for AVIF).",
          1, 100),
)
