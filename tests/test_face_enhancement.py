"""Face enhancement: loaders, detection, alignment, restoration, blending and paste-back.

Checkpoints are written in the official layouts with random weights (nothing downloads). The
detector's classification head is silenced so it finds no faces; where faces are needed a
scripted detector with RetinaFace's ``detect_faces`` contract reports the astronaut's face.
Random GFPGAN and ParseNet forwards are the slow part (seconds each on 2 cores): tests share them
through module-scoped fixtures (built once; released before other test files run).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from pipelines.base import Cancelled, ModelUnavailable, Picture, StepContext
from pipelines.faces import face_boxes
from pipelines.models import face_helpers, gfpgan
from pipelines.models.face_helpers import DetectedFace
from pipelines.models.loaders import load_model
from pipelines.precision import Precision
from pipelines.steps import face_enhancement as fe
from tests.conftest import astronaut
from tests.model_factories import save_random_gfpgan, save_random_parsenet, save_random_retinaface
from tests.server_process import ROOT

# The astronaut's eyes, nose tip and mouth corners in skimage's 512x512 photo (read off the image).
ASTRONAUT_LANDMARKS = np.array([[202, 101], [248, 102.5], [224.5, 125], [207, 142.5], [242, 143.5]])
ASTRONAUT_BOX = (175.0, 60.0, 275.0, 175.0)


class FakeModels:
    """A ModelProvider over already loaded models; counts what was asked for."""

    def __init__(self, models: dict[str, Any]):
        self.models, self.requests = models, []

    def get(self, model_id: str) -> Any:
        self.requests.append(model_id)
        return self.models[model_id]


class ScriptedDetector:
    """RetinaFace's detect_faces contract, answering with faces given in fractions of the image."""

    def __init__(self, faces: list[tuple[tuple[float, ...], float, np.ndarray]]):
        self.faces, self.seen = faces, []

    def detect_faces(self, bgr: np.ndarray, conf_threshold: float) -> np.ndarray:
        self.seen.append(bgr.shape)
        size = np.array([bgr.shape[1], bgr.shape[0]])
        rows = [[*(np.asarray(box).reshape(2, 2) * size).ravel(), score, *(landmarks * size).ravel()]
                for box, score, landmarks in self.faces]
        return np.asarray(rows, np.float32).reshape(-1, 15)


@pytest.fixture(scope="module")
def nets(tmp_path_factory) -> dict[str, Any]:
    """The three networks, written in their official layouts and read back through the loaders."""
    folder = tmp_path_factory.mktemp("photo-restoration")
    paths = {"gfpgan-v1-clean": save_random_gfpgan(folder / "GFPGANv1.4.pth", seed=1),
             "retinaface-resnet50": save_random_retinaface(folder / "detection_Resnet50_Final.pth"),
             "parsenet": save_random_parsenet(folder / "parsing_parsenet.pth", seed=2)}
    models = {loader: load_model(loader, path, "cpu") for loader, path in paths.items()}
    return {"paths": paths, fe.RESTORER_ID: models["gfpgan-v1-clean"],
            fe.DETECTOR_ID: models["retinaface-resnet50"], fe.PARSER_ID: models["parsenet"]}


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return astronaut().astype(np.float32) / 255


@pytest.fixture(scope="module")
def restored_astronaut(nets, photo) -> dict[str, np.ndarray]:
    """The astronaut's face aligned and restored (bf16 where the CPU has it), once. Its mask comes
    from a drawn label map: a random ParseNet labels at random (the run tests parse for real)."""
    matrix = fe.alignment_matrix(ASTRONAUT_LANDMARKS)
    crop = fe.align_face(photo, matrix)
    restored = gfpgan.restore_face(nets[fe.RESTORER_ID], crop, local_precision())
    return {"matrix": matrix, "crop": crop, "restored": restored, "mask": fe.feathered_mask(face_labels())}


def face_labels() -> np.ndarray:
    """ParseNet-style labels of a template face: skin (1) in an oval, hair (17) above, background (0)."""
    yy, xx = np.mgrid[0:512, 0:512]
    labels = np.where(((xx - 256) / 230) ** 2 + ((yy - 200) / 190) ** 2 < 1, 17, 0)
    return np.where(((xx - 256) / 150) ** 2 + ((yy - 290) / 190) ** 2 < 1, 1, labels).astype(np.uint8)


def local_precision() -> Precision:
    """What the per-worker check picks on this CPU with these weights (bf16 matches at 55.9 dB)."""
    return gfpgan.BF16_CPU if gfpgan.cpu_has_bf16_units() else gfpgan.FP32_CPU


@pytest.fixture(autouse=True)
def precision_decided(monkeypatch):
    """Skip the per-worker bf16 calibration (two more GFPGAN forwards); its logic is tested below."""
    monkeypatch.setitem(gfpgan._decisions, "cpu", local_precision())


def context(models: FakeModels | None, messages: list[str] | None = None,
            cancel_at: str | None = None) -> StepContext:
    messages = [] if messages is None else messages
    return StepContext(report=lambda fraction, stage: messages.append(stage),
                       is_cancelled=lambda: cancel_at is not None and cancel_at in messages,
                       models=models)


def test_checkpoints_use_official_layouts(nets):
    import torch

    detector = torch.load(nets["paths"]["retinaface-resnet50"], weights_only=True)
    assert all(key.startswith("module.") for key in detector)
    assert set(torch.load(nets["paths"]["gfpgan-v1-clean"], weights_only=True, mmap=True)) == {"params_ema"}
    assert "encoder.0.conv2d.weight" in torch.load(nets["paths"]["parsenet"], weights_only=True)
    assert not any(tensor.is_meta for tensor in nets[fe.RESTORER_ID].state_dict().values())
    assert face_helpers.strip_module_prefix({"module.a": 1, "b": 2}) == {"a": 1, "b": 2}


def test_no_faces_leaves_big_photo_unchanged_and_detects_at_bounded_size(nets):
    seen: list[tuple[int, ...]] = []
    detector = nets[fe.DETECTOR_ID]
    hook = detector.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape)))
    picture = Picture(np.full((4000, 6000, 3), 0.5, np.float32), bit_depth=16, info={"icc": b"profile"})
    models = FakeModels(nets)
    try:
        outcome = fe.run(picture, fe.STEP.checked({"fidelity": 0.7}), context(models))
    finally:
        hook.remove()
    assert outcome.image is picture and outcome.skipped is None
    assert models.requests == [fe.DETECTOR_ID]  # GFPGAN and ParseNet are not even loaded
    assert outcome.measurements == {"facesEnhanced": 0, "faces": [], "fidelity": 0.7}
    assert seen == [(1, 3, 853, 1280)]  # the detector saw the 1280 px copy, not 24 MP


def test_alignment_maps_landmarks_onto_template():
    angle, scale, shift = math.radians(23), 0.37, np.array([410.0, 260.0])
    rotation = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    landmarks = fe.FFHQ_TEMPLATE_512 @ rotation.T + shift
    matrix = fe.alignment_matrix(landmarks)
    mapped = landmarks @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(mapped - fe.FFHQ_TEMPLATE_512).max() < 1e-3
    back = fe.FFHQ_TEMPLATE_512 @ fe.inverse_alignment(matrix, 2)[:, :2].T + fe.inverse_alignment(matrix, 2)[:, 2]
    assert np.abs(back - (2 * landmarks + 0.5)).max() < 1e-3  # cv2.resize's pixel centres at 2x
    assert fe.alignment_matrix(np.full((5, 2), 7.0)) is None


def test_aligned_crop_puts_the_eyes_on_the_template(photo, restored_astronaut):
    crop = restored_astronaut["crop"]
    assert crop.shape == (512, 512, 3) and crop.dtype == np.float32
    for eye in fe.FFHQ_TEMPLATE_512[:2]:  # the astronaut's dark irises land where the template's eyes are
        x, y = np.round(eye).astype(int)
        assert crop[y - 4:y + 5, x - 4:x + 5].mean() < crop[y + 40:y + 60, x - 10:x + 10].mean() - 0.2


def test_known_face_restored_blended_and_pasted(photo, restored_astronaut):
    restored, mask, matrix = (restored_astronaut[key] for key in ("restored", "mask", "matrix"))
    assert restored.shape == (512, 512, 3) and np.isfinite(restored).all()
    assert 0 <= restored.min() and restored.max() <= 1 and mask.max() > 0.99
    assert not mask[0].any() and not mask[-1].any() and not mask[:, 0].any() and not mask[:, -1].any()
    canvas, inverse = photo.copy(), fe.inverse_alignment(matrix, 1)
    alpha = mask * fe.restoration_strength(0.5)
    fe.paste_face(canvas, restored, alpha, inverse)
    expected = _full_frame_blend(photo, restored, alpha, inverse)
    # The footprint-only paste is the plain formula (cv2 samples on a 1/32 px grid, so shifting the
    # warp's origin moves samples by up to 1/64 px: differences of a few 1e-4).
    assert np.abs(canvas - expected).max() < 2e-3
    x0, y0, x1, y1 = fe._footprint(inverse, (512, 512), photo.shape[:2])
    outside = np.ones(photo.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(canvas[outside], photo[outside]) and not np.allclose(canvas, photo, atol=0.01)


def _full_frame_blend(photo, face, alpha, inverse) -> np.ndarray:
    """facexlib's way: warp face and mask over the whole frame, then blend."""
    import cv2

    size = (photo.shape[1], photo.shape[0])
    face = fe._anti_aliased(face, inverse)
    warped = cv2.warpAffine(face, inverse, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    weight = cv2.warpAffine(alpha, inverse, size, flags=cv2.INTER_LINEAR, borderValue=0.0)[..., None]
    return photo + weight * (warped - photo)


def test_fidelity_is_monotonic(photo, restored_astronaut):
    """Distance to the original face falls as fidelity rises; fidelity 1 is the photo itself."""
    inverse = fe.inverse_alignment(restored_astronaut["matrix"], 1)
    x0, y0, x1, y1 = fe._footprint(inverse, (512, 512), photo.shape[:2])
    distances = []
    for fidelity in (0.0, 0.25, 0.5, 0.7, 0.9, 1.0):
        canvas = photo.copy()
        alpha = restored_astronaut["mask"] * fe.restoration_strength(fidelity)
        fe.paste_face(canvas, restored_astronaut["restored"], alpha, inverse)
        distances.append(float(np.sqrt(np.mean((canvas - photo)[y0:y1, x0:x1] ** 2))))
    assert all(a > b for a, b in zip(distances, distances[1:])), distances
    assert distances[0] > 0.02 and distances[-1] == 0.0, distances


def test_paste_back_has_no_seam():
    """A white face on a grey photo: the feathered mask's edge steps by a few levels per pixel;
    the same paste with the unfeathered mask jumps by the whole difference."""
    labels = face_labels()
    face = np.full((512, 512, 3), 0.9, np.float32)
    matrix = np.array([[2.0, 0.0, -300.0], [0.0, 2.0, -200.0]])  # the face is 256 px wide in the photo
    inverse = fe.inverse_alignment(matrix, 1)
    feathered, hard = np.full((600, 700, 3), 0.2, np.float32), np.full((600, 700, 3), 0.2, np.float32)
    fe.paste_face(feathered, face, fe.feathered_mask(labels), inverse)
    fe.paste_face(hard, face, np.isin(labels, fe.PASTE_LABELS).astype(np.float32), inverse)
    assert _max_step(hard) > 0.3
    assert _max_step(feathered) < 0.05
    assert abs(feathered[245, 278].mean() - 0.9) < 1e-3  # the middle of the face (crop 256, 290) is replaced


def _max_step(image: np.ndarray) -> float:
    return float(max(np.abs(np.diff(image, axis=0)).max(), np.abs(np.diff(image, axis=1)).max()))


def test_run_enhances_every_face_with_progress(nets, photo):
    """Two faces, upscale 2: progress per face, boxes and scores measured, alpha and metadata kept."""
    two = np.concatenate([photo, photo[:, ::-1]], axis=1)  # the second face is a mirror image
    mirrored = (512 * 2 - ASTRONAUT_LANDMARKS[[1, 0, 2, 4, 3], 0], ASTRONAUT_LANDMARKS[[1, 0, 2, 4, 3], 1])
    detector = ScriptedDetector([
        (_fractions(ASTRONAUT_BOX, two), 0.995, ASTRONAUT_LANDMARKS / [1024, 512]),
        (_fractions(_mirror(ASTRONAUT_BOX), two), 0.99, np.stack(mirrored, 1) / [1024, 512])])
    alpha = np.linspace(0, 1, two.shape[1], dtype=np.float32)[None].repeat(512, 0)
    picture = Picture(two, alpha=alpha, bit_depth=16, info={"icc": b"profile"})
    messages: list[str] = []
    models = FakeModels({**nets, fe.DETECTOR_ID: detector})
    params = fe.STEP.checked({"fidelity": 0.2, "onlyCenterFace": False, "upscale": 2})
    outcome = fe.run(picture, params, context(models, messages))
    assert set(models.requests) == {fe.DETECTOR_ID, fe.RESTORER_ID, fe.PARSER_ID}
    assert [m for m in messages if m.startswith("Enhancing face")] == ["Enhancing face 1/2", "Enhancing face 2/2"]
    assert outcome.measurements["facesEnhanced"] == 2 and outcome.measurements["fidelity"] == 0.2
    assert [f["score"] for f in outcome.measurements["faces"]] == [0.995, 0.99]
    boxes = np.array([f["box"] for f in outcome.measurements["faces"]])
    assert np.abs(boxes - 2 * np.array([ASTRONAUT_BOX, _mirror(ASTRONAUT_BOX)])).max() < 0.1
    image = outcome.image
    assert image.rgb.shape == (1024, 2048, 3) and image.alpha.shape == (1024, 2048)
    assert (image.bit_depth, image.info) == (16, {"icc": b"profile"}) and outcome.skipped is None
    background = fe.upscaled(two, 2)
    assert np.allclose(image.rgb[700:], np.clip(background[700:], 0, 1))  # far from the faces: Lanczos only
    assert np.abs(image.rgb[200:300, 400:500] - background[200:300, 400:500]).mean() > 0.01


def _fractions(box: tuple[float, ...], image: np.ndarray) -> tuple[float, ...]:
    return tuple(value / size for value, size in zip(box, [image.shape[1], image.shape[0]] * 2))


def _mirror(box: tuple[float, ...]) -> tuple[float, ...]:
    return (1024 - box[2], box[1], 1024 - box[0], box[3])


def test_cancellation_stops_before_the_next_face(nets, photo):
    face = (_fractions(ASTRONAUT_BOX, photo), 0.99, ASTRONAUT_LANDMARKS / 512)
    messages: list[str] = []
    models = FakeModels({**nets, fe.DETECTOR_ID: ScriptedDetector([face, face])})
    with pytest.raises(Cancelled):
        fe.run(Picture(photo), fe.STEP.checked({"fidelity": 0.7}),
               context(models, messages, cancel_at="Enhancing face 1/2"))
    assert messages[-1] == "Enhancing face 1/2"


def test_only_center_face_picks_the_nearest_to_the_middle():
    faces = [DetectedFace((0, 0, 10, 10), 0.99, np.zeros((5, 2))),
             DetectedFace((45, 40, 55, 60), 0.98, np.zeros((5, 2)))]
    assert fe.center_face(faces, 100, 100) is faces[1]


def test_retina_boxes_serve_face_boxes(photo):
    detector = ScriptedDetector([(_fractions(ASTRONAUT_BOX, photo), 0.99, ASTRONAUT_LANDMARKS / 512)])
    big = np.zeros((2048, 2048, 3), np.float32)
    boxes = face_boxes(big, context(FakeModels({fe.DETECTOR_ID: detector})))
    assert detector.seen == [(1024, 1024, 3)]  # faces.py already shrinks to its own bound
    x0, y0, x1, y1 = boxes[0]  # widened by faces.MARGIN around the 4x box
    assert (x0, y0) == (4 * 175 - 100, 4 * 60 - 115) and (x1, y1) == (4 * 275 + 100, 4 * 175 + 115)


def test_missing_models_raise_model_unavailable(photo):
    with pytest.raises(ModelUnavailable):
        fe.run(Picture(photo), fe.STEP.checked({}), context(None))


def test_precision_is_fp16_on_cuda_and_fp32_without_bf16_units(monkeypatch):
    assert gfpgan._decide(object(), "cuda:0").name == "fp16"
    monkeypatch.setattr(gfpgan, "cpu_has_bf16_units", lambda: False)
    assert gfpgan._decide(object(), "cpu").name == "fp32"


def test_bf16_only_when_it_matches_fp32():
    assert gfpgan.precision_for_agreement(55.0).name == "bf16"
    assert gfpgan.precision_for_agreement(40.0).name == "fp32"


def test_bf16_check_compares_against_fp32():
    """The check runs both precisions on the synthetic face (a stand-in network keeps it fast)."""
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x, return_rgb=False, randomize_noise=False):
            return torch.tanh(self.conv(x)), None

    face = gfpgan.calibration_face()
    assert face.shape == (512, 512, 3) and 0 <= face.min() and face.max() <= 1
    assert 35 < gfpgan.bf16_agreement_db(Tiny().eval(), face) < math.inf


def test_parsenet_runs_bf16_where_its_labels_agree_with_fp32(nets, monkeypatch):
    from pipelines import precision

    parser = nets[fe.PARSER_ID]  # read back through its loader, which decided
    assert parser.precision.name == ("bf16" if precision.cpu_has_bf16_units() else "fp32")
    face = gfpgan.calibration_face()
    fp32 = face_helpers.parse_face(parser, face, Precision("fp32", "cpu", channels_last=True))
    bf16 = face_helpers.parse_face(parser, face, Precision("bf16", "cpu", channels_last=True))
    assert (fp32 == bf16).mean() > 0.99  # measured 0.996 with these random weights
    assert (face_helpers.parse_face(parser, face) == fp32).all()  # channels_last changes no label
    assert face_helpers.label_agreement_db(fp32, fp32) == math.inf
    flipped = fp32.copy()
    flipped[200:260, 200:260] = (flipped[200:260, 200:260] + 1) % 19  # 1.4% of the face relabelled
    assert face_helpers.label_agreement_db(flipped, fp32) < precision.BF16_MIN_PSNR_DB
    assert face_helpers.parsenet_precision(parser, "cuda").name == "fp16"
    monkeypatch.setattr(precision, "cpu_has_bf16_units", lambda: False)
    assert face_helpers.parsenet_precision(parser, "cpu").name == "fp32"


def test_retinaface_runs_bf16_where_its_outputs_agree_with_fp32(nets, monkeypatch):
    import torch

    from pipelines import precision

    detector = nets[fe.DETECTOR_ID]  # read back through its loader, which decided
    assert detector.precision.name == ("bf16" if precision.cpu_has_bf16_units() else "fp32")
    assert face_helpers.detection_agreement_db(detector) >= precision.BF16_MIN_PSNR_DB  # measured 56.2 dB
    batch = torch.zeros(1, 3, 64, 64)
    with torch.inference_mode(), Precision("bf16", "cpu", channels_last=True).autocast("cpu"):
        outputs = detector(batch)
    assert all(output.dtype == torch.float32 for output in outputs)  # facexlib decodes them with NumPy
    # The measure falls when the outputs differ: a model whose bf16 run is perturbed scores below the bar.
    perturbed = face_helpers.build_retinaface().eval()
    perturbed.load_state_dict(detector.state_dict())
    original_forward = perturbed.forward

    def noisy(x):
        loc, conf, landmarks = original_forward(x)
        if torch.is_autocast_cpu_enabled():
            loc = loc + 0.05 * loc.abs().max() * torch.randn_like(loc)
        return loc, conf, landmarks
    perturbed.forward = noisy
    assert face_helpers.detection_agreement_db(perturbed) < precision.BF16_MIN_PSNR_DB
    assert face_helpers.retinaface_precision(detector, "cuda").name == "fp32"
    monkeypatch.setattr(precision, "cpu_has_bf16_units", lambda: False)
    assert face_helpers.retinaface_precision(detector, "cpu").name == "fp32"


def test_nms_keeps_boxes_whose_iou_is_nan():
    """torchvision suppresses only when IoU > threshold: two zero-area boxes (IoU 0/0) both stay."""
    import torch

    from pipelines.torchvision_compat import _nms

    boxes = torch.tensor([[5.0, 5.0, 5.0, 5.0], [5.0, 5.0, 5.0, 5.0]])
    assert _nms(boxes, torch.tensor([0.5, 0.9]), 0.4).tolist() == [1, 0]


def test_step_module_stays_light():
    import subprocess
    import sys

    code = "import sys, pipelines.steps.face_enhancement; print('torch' in sys.modules, 'facexlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    assert out.stdout.split() == ["False", "False"]
