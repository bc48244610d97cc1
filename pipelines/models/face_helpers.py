"""facexlib's RetinaFace (ResNet-50) detector and ParseNet face parser, from explicit paths.

facexlib's ``init_detection_model`` / ``init_parsing_model`` download their weights into a folder
relative to the working directory when the file is missing there. The loaders below build the
same networks and read the state dict from the path they are given, nothing else.

Also here: running them on float RGB images (:func:`detect_faces`, :func:`parse_face`).
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import cv2
import numpy as np

from pipelines.base import scaled_size

if TYPE_CHECKING:
    import torch

    from pipelines.precision import Precision

DETECTION_THRESHOLD = 0.97  # GFPGANer's: RetinaFace scores real faces at 0.99+
MIN_EYE_DISTANCE = 5.0  # full-resolution pixels; GFPGANer skips such side-on or tiny faces too
PARSE_SIZE = 512


@dataclass(frozen=True)
class DetectedFace:
    """One face in full-resolution pixel coordinates."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    score: float
    landmarks: np.ndarray  # 5x2: left eye, right eye, nose tip, left and right mouth corners

    @property
    def eye_distance(self) -> float:
        return float(np.linalg.norm(self.landmarks[1] - self.landmarks[0]))


def build_retinaface(device: str = "cpu") -> "torch.nn.Module":
    """facexlib's RetinaFace with a ResNet-50 body, randomly initialised."""
    import torch

    from pipelines.torchvision_compat import ensure_torchvision

    ensure_torchvision()
    from facexlib.detection.retinaface import RetinaFace

    with warnings.catch_warnings():
        # facexlib spells weights=None as resnet50(pretrained=False), which torchvision warns about.
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision.models._utils")
        return RetinaFace(network_name="resnet50", half=False, device=torch.device(device))


def load_retinaface(path: Path, device: str) -> "torch.nn.Module":
    """RetinaFace from ``detection_Resnet50_Final.pth`` (keys with or without ``module.``)."""
    import torch

    checkpoint = torch.load(Path(path), map_location="cpu", weights_only=True)
    model = build_retinaface(device)
    model.load_state_dict(strip_module_prefix(checkpoint), strict=True)
    model.register_forward_hook(_outputs_in_fp32)
    # channels_last weights: oneDNN ran the 512 px forward in 0.146 s against 0.184 s NCHW, to 5e-5.
    return model.eval().requires_grad_(False).to(memory_format=torch.channels_last)


def _outputs_in_fp32(module: Any, inputs: Any, outputs: tuple) -> tuple:
    """facexlib decodes the outputs with NumPy, which has no bf16: hand them over in fp32."""
    return tuple(output.float() for output in outputs)


BGR_MEANS = (104.0, 117.0, 123.0)  # what facexlib's detect_faces subtracts before the forward


def retinaface_precision(model: "torch.nn.Module", device: str) -> "Precision":
    """bf16 on CPUs with bf16 units when, on the calibration face, its face probabilities and its
    box and landmark regressions (each scaled by its fp32 range) agree with fp32's within
    BF16_MIN_PSNR_DB; fp32 otherwise, and on CUDA, where detection is cheap. bf16 forwards took
    0.061-0.066 s against 0.146 s fp32 at 512x384 (docs/NOTES.md, "GFPGAN")."""
    from pipelines import precision as shared

    if device.startswith("cuda"):
        return shared.Precision("fp32", "cuda", channels_last=False)
    return shared.decide_precision(device, lambda: detection_agreement_db(model), channels_last=True,
                                   bf16_allowed=shared.cpu_has_bf16_units, name="RetinaFace")


def detection_agreement_db(model: "torch.nn.Module") -> float:
    """The worst of three PSNRs, bf16 against fp32: face probability, box and landmark offsets."""
    import torch

    from pipelines.models.gfpgan import calibration_face
    from pipelines.precision import Precision, psnr

    bgr = calibration_face()[..., ::-1] * 255.0 - np.asarray(BGR_MEANS, np.float32)
    tensor = torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1), dtype=np.float32))[None]
    tensor = tensor.contiguous(memory_format=torch.channels_last)
    outputs = {}
    for name in ("fp32", "bf16"):
        with torch.inference_mode(), Precision(name, "cpu", channels_last=True).autocast("cpu"):
            loc, conf, landmarks = (output.float() for output in model(tensor))
        outputs[name] = (torch.softmax(conf, -1)[..., 1], loc, landmarks)
    scores = []
    for reference, candidate in zip(outputs["fp32"], outputs["bf16"]):
        scale = float(reference.abs().max()) or 1.0
        scores.append(psnr((candidate / scale).numpy(), (reference / scale).numpy()))
    return min(scores)


def strip_module_prefix(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The weights without DataParallel's ``module.`` prefix, which the official file carries."""
    state = checkpoint.get("state_dict", checkpoint)
    return {key.removeprefix("module."): value for key, value in state.items()}


def build_parsenet() -> "torch.nn.Module":
    from pipelines.torchvision_compat import ensure_torchvision

    ensure_torchvision()
    from facexlib.parsing.parsenet import ParseNet

    return ParseNet(in_size=PARSE_SIZE, out_size=PARSE_SIZE, parsing_ch=19)


def load_parsenet(path: Path, device: str) -> "torch.nn.Module":
    """ParseNet from ``parsing_parsenet.pth`` (a bare state dict), weights stored channels_last
    (its loader then decides its precision: :func:`parsenet_precision`)."""
    import torch

    model = build_parsenet()
    model.load_state_dict(torch.load(Path(path), map_location="cpu", weights_only=True), strict=True)
    return model.eval().requires_grad_(False).to(device).to(memory_format=torch.channels_last)


def parsenet_precision(model: "torch.nn.Module", device: str) -> "Precision":
    """bf16 on CPUs with bf16 units when its labels on the calibration face agree with fp32's within
    BF16_MIN_PSNR_DB (:func:`label_agreement_db`); fp16 on CUDA; fp32 otherwise. channels_last bf16
    parsed a face in 1.26 s against 2.65 s fp32 NCHW (docs/NOTES.md, "GFPGAN")."""
    from pipelines import precision as shared
    from pipelines.models.gfpgan import calibration_face

    def agreement_db() -> float:
        face = calibration_face()
        fp32, bf16 = (parse_face(model, face, shared.Precision(name, "cpu", channels_last=True))
                      for name in ("fp32", "bf16"))
        return label_agreement_db(bf16, fp32)
    return shared.decide_precision(device, agreement_db, channels_last=True,
                                   bf16_allowed=shared.cpu_has_bf16_units, name="ParseNet")


LABEL_BLUR_SIGMA = 8.0  # half the paste mask's feathering (face_enhancement.FEATHER_SIGMA, 15.6 px)


def label_agreement_db(first: np.ndarray, second: np.ndarray, classes: int = 19) -> float:
    """PSNR between two label maps seen as blurred one-hot masks: the face step feathers its mask
    before use, so a flipped label counts by how far it moves a blurred mask, not a hard edge."""
    from pipelines.precision import psnr

    def soft(labels: np.ndarray) -> np.ndarray:
        return np.stack([cv2.GaussianBlur((labels == k).astype(np.float32), (0, 0), LABEL_BLUR_SIGMA)
                         for k in range(classes)])
    return psnr(soft(first), soft(second))


def detect_faces(detector: Any, rgb: np.ndarray, max_side: int) -> list[DetectedFace]:
    """Faces in float RGB [0, 1], found on a copy at most ``max_side`` px long, best first.

    ``detector`` is facexlib's RetinaFace (or anything with its ``detect_faces`` contract: BGR
    0-255 in, rows of box, score and ten landmark coordinates out).
    """
    import torch

    small, factor = shrink_to(rgb, max_side)
    bgr = np.ascontiguousarray(small[..., ::-1], dtype=np.float32) * 255.0
    decided = getattr(detector, "precision", None)  # its loader's decision, when a loader made it
    autocast = decided.autocast(decided.device_type) if decided is not None else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        rows = np.asarray(detector.detect_faces(bgr, conf_threshold=DETECTION_THRESHOLD), np.float64)
    faces = [_face_from_row(row, factor) for row in rows.reshape(-1, 15)]
    return [face for face in faces if face.eye_distance >= MIN_EYE_DISTANCE]


def shrink_to(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """A copy at most ``max_side`` px on its long side (area-averaged) and its scale factor."""
    long_side = max(rgb.shape[:2])
    if long_side <= max_side:
        return rgb, 1.0
    factor = max_side / long_side
    size = scaled_size(rgb.shape[1], rgb.shape[0], factor)
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), factor


def _face_from_row(row: np.ndarray, factor: float) -> DetectedFace:
    x0, y0, x1, y1 = (float(value) / factor for value in row[:4])
    return DetectedFace(box=(x0, y0, x1, y1), score=float(row[4]), landmarks=row[5:15].reshape(5, 2) / factor)


def parse_face(parser: "torch.nn.Module", face: np.ndarray, precision: "Precision | None" = None) -> np.ndarray:
    """ParseNet's class per pixel (uint8 512x512, CelebAMask-HQ's 19 labels) of an aligned face."""
    import torch

    logits = _parse_logits(parser, face, precision)
    return logits.argmax(dim=1)[0].to(torch.uint8).cpu().numpy()


def _parse_logits(parser: "torch.nn.Module", face: np.ndarray, precision: "Precision | None") -> "torch.Tensor":
    import torch

    if face.shape[:2] != (PARSE_SIZE, PARSE_SIZE):
        face = cv2.resize(face, (PARSE_SIZE, PARSE_SIZE), interpolation=cv2.INTER_LINEAR)
    device = next(parser.parameters()).device
    tensor = torch.from_numpy(np.ascontiguousarray(face.transpose(2, 0, 1), dtype=np.float32)).unsqueeze(0)
    tensor = (tensor * 2 - 1).to(device)  # ParseNet also works in [-1, 1]
    if precision is not None and precision.channels_last:
        tensor = tensor.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), (precision.autocast(device.type) if precision else contextlib.nullcontext()):
        return parser(tensor)[0]
