"""DDColor (ModelScope damo/cv_ddcolor_image-colorization): load the official files, predict ab.

The official model directory holds ``pytorch_model.pt`` (``{'params': state_dict}``) and
``configuration.json``. It is loaded through modelscope's own ``DDColorForImageColorization`` so
the architecture is exactly the one the weights were trained for. :class:`DDColorColorizer` runs
it on one 512x512 grey RGB input and returns the predicted Lab (a, b) channels, in the precision
chosen for the device: fp16 on CUDA, fp32 channels_last on CPUs (see :data:`BF16_ON_CPU`).
"""
from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from pipelines.precision import BF16_MIN_PSNR_DB, Precision, cpu_has_bf16_units, decide_precision, psnr

if TYPE_CHECKING:
    import torch

log = logging.getLogger("restora.ddcolor")

# modelscope's pipeline feeds the model 512x512 whatever the photo's size (its input_size).
INPUT_SIDE = 512
WEIGHTS_FILE = "pytorch_model.pt"
CONFIG_FILE = "configuration.json"
# The official model is ConvNeXt-L; its configuration.json names no encoder, so this is the default.
DEFAULT_ENCODER = "convnext-l"
KNOWN_ENCODERS = ("convnext-t", "convnext", "convnext-s", "convnext-b", "convnext-l")

# bf16 on CPU is off: it was measured no faster than fp32 (the colour decoder's einsum casts a
# 256x512x512 map to bf16 in a strided copy), and its agreement with fp32 could only be checked
# with random weights, not the official ones (figures: docs/NOTES.md, "DDColor"). Set True to let
# each load's calibration decide.
BF16_ON_CPU = False
# bf16 is kept only if, on the calibration card, the RGB result (card lightness + predicted ab)
# matches fp32 within BF16_MIN_PSNR_DB: the same bar as pipelines.precision uses for Real-ESRGAN
# (imported from there, and readable here as ddcolor.BF16_MIN_PSNR_DB).
# The calibration card's side: DDColor was trained at 256x256 (modelscope's colorization dataset),
# and a 256 pass costs a quarter of a 512 one, paid twice (fp32, bf16) on every worker's first load.
CALIBRATION_SIDE = 256


@dataclass
class DDColorColorizer:
    """A loaded DDColor model and the precision it runs in; what the ``ddcolor`` loader returns."""

    model: "torch.nn.Module"  # modelscope's DDColorForImageColorization
    precision: Precision
    encoder_name: str
    # DDColor's decoder reads the encoder's features from hooks stored on the model, so two
    # forward passes at once on one model would mix their features: one at a time.
    _forward_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def predict_ab(self, grey_rgb: np.ndarray) -> np.ndarray:
        """Lab (a, b) float32 HxWx2 for a float32 HxWx3 grey RGB image in [0, 1] (the model input)."""
        with self._forward_lock:
            return predict_ab(self.model, grey_rgb, self.precision)


def load_ddcolor(path: Path, device: str) -> DDColorColorizer:
    """Load the official DDColor files; ``path`` is the weights file, its folder the model dir."""
    model_dir = Path(path).parent
    encoder_name = encoder_name_from_config(read_config(model_dir))
    model = build_ddcolor(model_dir, encoder_name, device)
    precision = choose_precision(model, device)
    log.info("DDColor %s on %s runs in %s", encoder_name, device, precision)
    return DDColorColorizer(model=model, precision=precision, encoder_name=encoder_name)


def read_config(model_dir: Path) -> Mapping[str, Any]:
    config_path = model_dir / CONFIG_FILE
    if not config_path.exists():
        return {}  # the weights alone are a complete model: the encoder then takes its default
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if not isinstance(config, Mapping):
        raise ValueError(f"{config_path} is not a JSON object")
    return config


def encoder_name_from_config(config: Mapping[str, Any]) -> str:
    """``model.encoder_name`` (modelscope passes ``model`` keys to the constructor), else the default."""
    model_section = config.get("model", {})
    name = model_section.get("encoder_name") if isinstance(model_section, Mapping) else None
    name = name or config.get("encoder_name") or DEFAULT_ENCODER
    if name not in KNOWN_ENCODERS:
        raise ValueError(f"unknown DDColor encoder {name!r}; expected one of {', '.join(KNOWN_ENCODERS)}")
    return str(name)


def build_ddcolor(model_dir: Path, encoder_name: str, device: str) -> "torch.nn.Module":
    """modelscope's DDColorForImageColorization with the weights in ``model_dir``, eval, on ``device``."""
    from pipelines.torchvision_compat import ensure_torchvision

    ensure_torchvision()  # modelscope's DDColor imports timm, which imports torchvision
    from modelscope.models.cv.image_colorization import DDColorForImageColorization

    model = DDColorForImageColorization(str(model_dir), encoder_name=encoder_name,
                                        input_size=(INPUT_SIDE, INPUT_SIDE))
    return model.eval().requires_grad_(False).to(device)


def predict_ab(model: "torch.nn.Module", grey_rgb: np.ndarray, precision: Precision) -> np.ndarray:
    """Run the model on one grey RGB image (HxWx3 float32 in [0, 1]); (a, b) as HxWx2 float32."""
    import torch

    device = next(model.parameters()).device
    memory_format = torch.channels_last if precision.channels_last else torch.contiguous_format
    tensor = torch.from_numpy(np.ascontiguousarray(grey_rgb.transpose(2, 0, 1), dtype=np.float32))
    tensor = tensor.unsqueeze(0).to(device).contiguous(memory_format=memory_format)
    with torch.inference_mode(), precision.autocast(device.type):
        # The same call as modelscope's pipeline: the wrapper's forward unpacks the dict.
        output_ab = model({"img": tensor})
    return output_ab[0].float().permute(1, 2, 0).cpu().numpy()


def choose_precision(model: "torch.nn.Module", device: str) -> Precision:
    """fp16 on CUDA; fp32 on CPU, or where enabled bf16 if measured to match fp32 on these weights."""
    import torch

    if not device.startswith("cuda"):
        # oneDNN prefers channels_last: it measured several times faster than NCHW (docs/NOTES.md).
        model.to(memory_format=torch.channels_last)
    # Not cached: once per load. The names are read here at call time, so tests can patch them.
    return decide_precision(device, lambda: bf16_agreement_db(model), channels_last=True,
                            bf16_allowed=lambda: BF16_ON_CPU and cpu_has_bf16_units(), name="DDColor")


def bf16_agreement_db(model: "torch.nn.Module") -> float:
    """PSNR of the bf16 colour result against the fp32 one, both on the grey card's own lightness."""
    card = grey_calibration_card()
    lightness = lightness_of(card)
    results = [lab_to_rgb(lightness, predict_ab(model, card, Precision(name, "cpu", channels_last=True)))
               for name in ("fp32", "bf16")]
    return psnr(results[1], results[0])


def grey_calibration_card() -> np.ndarray:
    """pipelines.precision's test card, made grey as the model's input always is."""
    from pipelines.precision import calibration_image

    return grey_from_lightness(lightness_of(calibration_image(CALIBRATION_SIDE)))


def lightness_of(rgb: np.ndarray) -> np.ndarray:
    """CIE L (0..100) of float32 RGB in [0, 1], HxW float32 (OpenCV's sRGB D65 conversion)."""
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.float32), cv2.COLOR_RGB2Lab)[..., 0]


def grey_from_lightness(lightness: np.ndarray) -> np.ndarray:
    """The neutral RGB image with this lightness: Lab (L, 0, 0) converted back to RGB."""
    zeros = np.zeros_like(lightness)
    return lab_to_rgb(lightness, np.stack([zeros, zeros], axis=-1))


def lab_to_rgb(lightness: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """Float32 RGB in [0, 1] from L (HxW, 0..100) and (a, b) (HxWx2); out-of-gamut values clip."""
    import cv2

    lab = np.concatenate([lightness[..., None], ab], axis=-1).astype(np.float32, copy=False)
    return np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB), 0.0, 1.0)
