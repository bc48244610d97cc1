"""Converters that turn packaged weights into official checkpoint formats.

Run as ``python -m pipelines.models.converters NAME OUTPUT`` (the installer does this in a child
process so the server never imports torch).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable


def _ncnn_realesrgan_x4plus(out: Path) -> None:
    from pipelines.models.ncnn_realesrgan import convert_to_pth, packaged_x4plus_files

    param, weights = packaged_x4plus_files()
    convert_to_pth(param, weights, out)


CONVERTERS: dict[str, Callable[[Path], None]] = {
    "ncnn-realesrgan-x4plus": _ncnn_realesrgan_x4plus,
}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in CONVERTERS:
        sys.stderr.write(f"usage: converters {{{'|'.join(CONVERTERS)}}} OUTPUT\n")
        return 2
    CONVERTERS[argv[0]](Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
