"""Choose the learned detector's thresholds and candidates on validation crops, never held-out.

    .venv/bin/python tools/validate_damage_detector.py [--weights PATH] [--mirrored] [--structure-fraction 0.25]
    .venv/bin/python tools/validate_damage_detector.py [--weights PATH] [--mirrored] \
        --generator validation_damage [--photos unseen]

Damage from tools/synth_damage.py with seeds apart from training (and from the tests), on
scikit-image's photos (training's); or with --generator validation_damage from
tools/validation_damage.py, a generator written apart from training's (no structures drawn over
its crops), on scikit-image's photos or, with --photos unseen, on PyWavelets' two that no
detector was trained on (then also the clean photos). The held-out benchmark
(bench/restore_quality.py) is never used for this.
Prints, for several (low, high) hysteresis pairs: pixel recall and precision with a 2 px
tolerance on damaged crops, and the coverage on the clean full-size photos (with and without
sigma 4 noise + JPEG) and on woven cloth and the other clean structures of
tools/synth_structures.py (drawn with seeds apart from training), for the learned pass alone
(with and without the dense-region test), the straight-line pass, and both merged. At the
shipped pair with the dense test it also repairs the damaged crops (Telea, restore-photo's fill
without a bundle) and prints the held-out bench's two repair figures: the PSNR gain inside the
damage and the change outside it (tools/repair_figures.py, the bench's definition).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines import damage_detection as dd  # noqa: E402
from pipelines.base import StepContext  # noqa: E402
from pipelines.inpainting import fill_damage  # noqa: E402
from pipelines.models.loaders import PackagedModels  # noqa: E402
from pipelines.scratch_detection import scratch_mask  # noqa: E402
from tools.repair_figures import repair_change, untouched_outside  # noqa: E402
from tools.synth_damage import load_photos, make_sample  # noqa: E402
from tools.synth_structures import STRUCTURES, woven_cloth  # noqa: E402
from tools.validation_damage import load_unseen_photos, make_validation_sample  # noqa: E402

QUIET = StepContext(report=lambda fraction, stage: None, is_cancelled=lambda: False)
PAIRS = ((0.3, 0.5), (0.4, 0.6), (0.5, 0.7), (0.4, 0.8), (0.6, 0.8), (0.5, 0.9), (0.7, 0.9))
DISC5 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))


def tolerant_scores(found: np.ndarray, truth: np.ndarray) -> tuple[float, float, float, float]:
    """(hits for recall, true count, hits for precision, found count) with a 2 px tolerance."""
    near_found = cv2.dilate(found.astype(np.uint8), DISC5) > 0
    near_truth = cv2.dilate(truth.astype(np.uint8), DISC5) > 0
    return float((truth & near_found).sum()), float(truth.sum()), float((found & near_truth).sum()), float(found.sum())


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--samples", type=int, default=48)
    parser.add_argument("--mirrored", action="store_true", help="average in the mirrored view's answer")
    parser.add_argument("--structure-fraction", type=float, default=0.0,
                        help="share of damaged crops drawn over clean structures (the conservative run's 0.25)")
    parser.add_argument("--generator", choices=("synth_damage", "validation_damage"), default="synth_damage",
                        help="draw the damaged crops with training's generator (seeds apart) or the one written apart")
    parser.add_argument("--photos", choices=("training", "unseen"), default="training",
                        help="scikit-image's (training's) photos, or PyWavelets' two that no detector was trained on "
                             "(damaged crops with --generator validation_damage, and the clean photos)")
    args = parser.parse_args()
    if args.photos == "unseen" and args.generator != "validation_damage":
        parser.error("--photos unseen needs --generator validation_damage (synth_damage draws training's photos)")
    if args.structure_fraction and args.generator == "validation_damage":
        parser.error("--structure-fraction is synth_damage's: validation_damage draws no structures")
    return args


def main() -> None:
    args = parse_args()
    dd.MIRRORED_PASS = args.mirrored
    model = detector(args.weights)
    photos = load_photos() if args.photos == "training" else load_unseen_photos()
    damaged = damaged_crops(args.generator, photos, args.samples, args.structure_fraction)
    probabilities = [dd.damage_probability(s.image, QUIET, model) for s in damaged]
    straight = [scratch_mask(s.image) for s in damaged]
    clean = [(name, p) for name, p in photos.items()] + [
        (f"{name}+noise", degrade_fixed(p, i)) for i, (name, p) in enumerate(photos.items())]
    clean_probabilities = [dd.damage_probability(p, QUIET, model) for _, p in clean]
    textures = texture_probabilities(model)
    for low, high in PAIRS:
        for dense_test in (False, True):
            report_pair(low, high, dense_test, damaged, probabilities, straight,
                        [name for name, _ in clean], clean_probabilities, textures)
    report_repair(damaged, probabilities)
    line_totals = sum(np.array(tolerant_scores(line, s.mask)) for s, line in zip(damaged, straight))
    print(f"straight-line pass alone: R {line_totals[0] / line_totals[1]:.3f} P {line_totals[2] / line_totals[3]:.3f}")
    print("photos:", ", ".join(photos))


def detector(weights: Path | None):
    """The packaged standard detector, or ``weights`` run at the packaged one's precision."""
    model = PackagedModels("cpu", 2).get(dd.DETECTOR_ID)
    if weights:
        from pipelines.models.damage_unet import load_damage_unet

        precision = model.precision
        model = load_damage_unet(weights, "cpu")
        model.precision = precision
    return model


def texture_probabilities(model) -> dict[str, list]:
    """Woven cloth and the other clean structures, drawn with seeds apart from training."""
    cloth_rng = np.random.default_rng(40_000)
    structure_rng = np.random.default_rng(45_000)
    return {
        "cloth": [dd.damage_probability(woven_cloth(cloth_rng), QUIET, model) for _ in range(8)],
        "structures": [dd.damage_probability(draw(structure_rng, 384), QUIET, model)
                       for name, draw in STRUCTURES.items() if name != "cloth" for _ in range(4)],
    }


def damaged_crops(generator: str, photos: dict, count: int, structure_fraction: float) -> list:
    if generator == "validation_damage":  # its own seeds; it draws no structures
        rng = np.random.default_rng(50_000)
        return [make_validation_sample(rng, photos, 384) for _ in range(count)]
    rng = np.random.default_rng(20_000)
    return [make_sample(rng, photos, 384, clean_fraction=0.0, structure_fraction=structure_fraction)
            for _ in range(count)]


def report_pair(low, high, dense_test, damaged, probabilities, straight, clean_names, clean_probabilities,
                texture_probabilities: dict[str, list]) -> None:
    def learned(probs: np.ndarray) -> np.ndarray:
        mask = dd.hysteresis(probs, low, high)
        return dd.drop_dense_regions(mask) if dense_test else mask

    totals, merged_totals = np.zeros(4), np.zeros(4)
    for sample, probs, line in zip(damaged, probabilities, straight):
        found = learned(probs)
        totals += tolerant_scores(found, sample.mask)
        merged_totals += tolerant_scores(found | line, sample.mask)
    coverage = [100 * learned(p).mean() for p in clean_probabilities]
    worst = int(np.argmax(coverage))
    texture_text = " | ".join(
        f"{name} mean {np.mean(c):.2f}% worst {max(c):.2f}%"
        for name, c in ((name, [100 * learned(p).mean() for p in probs]) for name, probs in texture_probabilities.items()))
    print(f"low {low} high {high} dense test {'on ' if dense_test else 'off'}: "
          f"learned R {totals[0] / totals[1]:.3f} P {totals[2] / totals[3]:.3f} | "
          f"merged R {merged_totals[0] / merged_totals[1]:.3f} P {merged_totals[2] / merged_totals[3]:.3f} | "
          f"clean coverage mean {np.mean(coverage):.3f}% worst {coverage[worst]:.3f}% ({clean_names[worst]}) | "
          f"{texture_text}")


def report_repair(damaged, probabilities) -> None:
    f = repair_figures(damaged, probabilities)

    def db(name: str) -> str:
        return "-" if f[name] is None else f"{f[name]:+.2f}"

    print(f"repair at ({dd.LOW_THRESHOLD}, {dd.HIGH_THRESHOLD}), dense test on, Telea, {f['crops']} crops: "
          f"gain inside the damage min {db('gainMin')} mean {db('gainMean')} dB | "
          f"undamaged area, {f['graded']} degraded crops: mean {db('undamagedMean')} "
          f"worst {db('undamagedWorst')} dB ({f['worstKinds']}); "
          f"{len(f['pristineChanges'])} of the {f['pristine']} crops without any degradation changed outside the "
          f"damage ({', '.join(f'{change:+.1f}' for change in f['pristineChanges']) or 'none'} dB)")


def repair_figures(damaged, probabilities) -> dict:
    """Gain inside the damage and change outside it, repaired with the shipped thresholds; crops
    whose drawn damage was too faint to count (an empty mask) are left out. Figures with no crop
    to measure are None."""
    rows = [_repair_row(sample, probs) for sample, probs in zip(damaged, probabilities) if sample.mask.any()]
    # Crops identical to the original outside the damage (untouched_outside) read ~-70 dB for any
    # false alarm: counted apart instead of swamping the worst figure.
    graded = [row for row in rows if not row["pristine"]]
    worst = min(graded, key=lambda row: row["undamaged"], default=None)
    gains = [row["gain"] for row in rows]
    return {"crops": len(rows), "gainMin": min(gains, default=None), "gainMean": _mean(gains),
            "graded": len(graded), "undamagedMean": _mean([row["undamaged"] for row in graded]),
            "undamagedWorst": None if worst is None else worst["undamaged"],
            "worstKinds": None if worst is None else worst["kinds"], "pristine": len(rows) - len(graded),
            "pristineChanges": [row["undamaged"] for row in rows if row["pristine"] and row["undamaged"] < 0]}


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _repair_row(sample, probs: np.ndarray) -> dict:
    repaired, _ = fill_damage(sample.image, dd.shipped_mask(probs), 8, QUIET)
    gain, undamaged = repair_change(repaired, sample.image, sample.original, sample.mask)
    return {"gain": gain, "undamaged": undamaged, "kinds": "+".join(sample.kinds),
            "pristine": untouched_outside(sample.image, sample.original, sample.mask)}


def degrade_fixed(photo: np.ndarray, seed: int) -> np.ndarray:
    """sigma 4 noise, then JPEG q85 (4:2:0)."""
    rng = np.random.default_rng(30_000 + seed)
    noisy = np.clip(photo + rng.normal(0, 4 / 255, photo.shape).astype(np.float32), 0, 1)
    bgr = cv2.cvtColor((noisy * 255).round().astype(np.uint8), cv2.COLOR_RGB2BGR)
    encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 85])[1]
    return cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(np.float32) / 255


if __name__ == "__main__":
    main()
