"""Restore quality on a held-out set: which damage each detector finds, what the repair gains, and
what it does to clean photos (issue 14's proof).

The set (``heldout_damage.py``): three photos from scikit-learn and matplotlib at two crops or
scales each, with five damage types (curved scratches, branching cracks, dust, wavy film
scratches, fold lines) on colour and grey versions under grain, noise and JPEG; and a clean set
of those photos plus thin-line textures (text, brick, gravel, clock, fabric, hair), clean and with
sigma 4 noise + JPEG q85. Detectors side by side, every mask filled by the same fill:

- ``today``: ``pipelines.scratch_detection.scratch_mask``, the straight-line detector;
- ``snapotter``: the peer's line top-hat, re-implemented here (``line_tophat_mask``);
- ``new``: ``pipelines.damage_detection.detect_damage``, the product's detector;
- ``conservative``: the same with ``damageDetector: "conservative"`` (fine-tuned with clean structures);
- ``truth``: the true mask, the upper bound.

Printed per damage type and detector: pixel recall and precision with a 2 px tolerance, PSNR gain
inside the true mask (min and mean over photos), the change outside the true mask dilated by 3 px
(PSNR(out, original) - PSNR(in, original); negative = moved away; the worst photo), and the share
of pixels flagged. On the clean set: coverage (mean, worst), PSNR(out, in) (worst) and, for noisy
ones, PSNR(out, noise-free) - PSNR(in, noise-free) (worst). Then seconds per megapixel, JSON lines
of every figure, and side-by-side crops (``--crops``; ``docs/restore-quality`` holds a set).
The original is always the undamaged, noise-free photo. Measures only; asserts nothing.

Run: ``.venv/bin/python bench/restore_quality.py [--seed 14] [--crops DIR] [--json FILE]``.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable

import cv2
import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as ``python bench/x.py``: tools/ is beside it

from heldout_damage import DAMAGE_TYPES, Sample, clean_set, damaged_set  # noqa: E402
from pipelines.base import StepContext  # noqa: E402
from pipelines.damage_detection import detect_damage, learned_mask  # noqa: E402
from pipelines.inpainting import fill_damage  # noqa: E402
from pipelines.scratch_detection import scratch_mask  # noqa: E402
from tools.repair_figures import near, psnr, repair_change  # noqa: E402  (the validation tool's too)
from _results import record  # bench/_results.py (bench/ is on sys.path)  # noqa: E402

TOLERANCE = 2  # px: a detection this close to a true pixel counts, and the other way round
CROP = 128  # side of each panel in the saved crops
CROP_SAMPLES = ("scratch/hopper", "crack/flower-crop@1.5", "dust/china@0.6", "film/china", "fold/hopper@0.7",
                "text+noise", "brick", "hair+noise", "fabric", "clock")
Detector = Callable[[np.ndarray], np.ndarray]


def quiet() -> StepContext:
    return StepContext(report=lambda fraction, stage: None, is_cancelled=lambda: False)


# --- the peer's baseline ------------------------------------------------------------------------

# SnapOtter (packages/ai/python/restore.py, detect_scratches, "medium"), read and re-implemented:
# CLAHE-boosted luminance; white + black top-hats with line elements of three lengths tied to the
# short side, in four directions; any response over a fixed level is damage; then open, close and
# dilate the mask.
PEER_LEVEL = 130
PEER_LENGTHS = ((80, 9), (50, 15), (30, 25))  # (short side divided by, at least) px


def line_tophat_mask(rgb: np.ndarray) -> np.ndarray:
    luma = cv2.cvtColor((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8), cv2.COLOR_RGB2GRAY)
    boosted = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(8, 8)).apply(luma)
    flagged = np.zeros(luma.shape, np.uint8)
    for divisor, least in PEER_LENGTHS:
        for element in _line_elements(max(least, min(luma.shape) // divisor) | 1):
            response = cv2.add(cv2.morphologyEx(boosted, cv2.MORPH_TOPHAT, element),
                               cv2.morphologyEx(boosted, cv2.MORPH_BLACKHAT, element))
            flagged |= (response > PEER_LEVEL).astype(np.uint8)
    for operation, size in ((cv2.MORPH_OPEN, 3), (cv2.MORPH_CLOSE, 5), (cv2.MORPH_DILATE, 3)):
        flagged = cv2.morphologyEx(flagged, operation, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    return flagged.astype(bool)


def _line_elements(length: int) -> list[np.ndarray]:
    """One-pixel lines: horizontal, vertical and the two diagonals."""
    horizontal = np.zeros((length, length), np.uint8)
    horizontal[length // 2] = 1
    diagonal = np.eye(length, dtype=np.uint8)
    return [horizontal, horizontal.T.copy(), diagonal, np.fliplr(diagonal).copy()]


DETECTORS: dict[str, Detector] = {
    "today": lambda rgb: scratch_mask(rgb),
    "snapotter": line_tophat_mask,
    # The two candidates for the product: the learned pass alone, and merged with the straight pass.
    "learned": lambda rgb: learned_mask(rgb, quiet()),
    "merged": lambda rgb: learned_mask(rgb, quiet()) | scratch_mask(rgb),
    "new": lambda rgb: detect_damage(rgb, (), quiet()),  # what restore-photo ships: one of the two
    "conservative": lambda rgb: detect_damage(rgb, (), quiet(), "conservative"),  # damageDetector's other choice
}


# --- the one fill every detector's mask goes through ----------------------------------------------

def product_fill(rgb: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, str]:
    """restore-photo's own fill (Telea here: no LaMa bundle is installed on a bench machine)."""
    return fill_damage(rgb, mask, 8, quiet())


# --- measures -----------------------------------------------------------------------------------

def damage_figures(sample: Sample, mask: np.ndarray, out: np.ndarray) -> dict[str, float]:
    gain, undamaged = repair_change(out, sample.damaged, sample.original, sample.truth)
    return {
        "truePixels": int(sample.truth.sum()), "found": int((sample.truth & near(mask, TOLERANCE)).sum()),
        "flagged": int(mask.sum()), "right": int((mask & near(sample.truth, TOLERANCE)).sum()),
        "gain": gain, "undamaged": undamaged, "coverage": 100 * float(mask.mean())}


def clean_figures(sample: Sample, mask: np.ndarray, out: np.ndarray) -> dict[str, float]:
    figures = {"coverage": 100 * float(mask.mean()), "psnrOutIn": psnr(out, sample.damaged)}
    if sample.noisy:
        figures["vsNoiseFree"] = psnr(out, sample.original) - psnr(sample.damaged, sample.original)
    return figures


# --- running ------------------------------------------------------------------------------------

def evaluate(samples: list[Sample], fill: Callable, keep: set[str]) -> tuple[list[dict], dict[str, list[float]], dict]:
    """Every detector (and the truth) on every sample: figures, detector seconds, kept results."""
    rows, seconds, kept = [], defaultdict(list), {}
    for sample in samples:
        masks = {}
        for name, detector in DETECTORS.items():
            started = time.perf_counter()
            masks[name] = np.asarray(detector(sample.damaged), bool)
            seconds[name].append(time.perf_counter() - started)
        if sample.category != "clean":
            masks["truth"] = sample.truth
        for name, mask in masks.items():
            out, method = fill(sample.damaged, mask) if mask.any() else (sample.damaged, "none")
            measure = clean_figures if sample.category == "clean" else damage_figures
            rows.append({"sample": sample.name, "category": sample.category, "detector": name, "fill": method,
                         **measure(sample, mask, out)})
            if sample.name in keep:
                kept[sample.name, name] = (mask, out)
    return rows, seconds, kept


def damage_entries(rows: list[dict]) -> list[dict]:
    entries = []
    for category in (*DAMAGE_TYPES, "all"):
        for detector in (*DETECTORS, "truth"):
            mine = [row for row in rows if row["detector"] == detector and category in (row["category"], "all")
                    and row["category"] != "clean"]
            gains = [row["gain"] for row in mine]
            flagged = sum(row["flagged"] for row in mine)
            entries.append({
                "bench": "restore_quality", "set": "damaged", "category": category, "detector": detector,
                "samples": len(mine),
                "recall": sum(row["found"] for row in mine) / sum(row["truePixels"] for row in mine),
                "precision": sum(row["right"] for row in mine) / flagged if flagged else None,
                "gainMinDb": min(gains), "gainMeanDb": float(np.mean(gains)),
                "undamagedWorstDb": min(row["undamaged"] for row in mine),
                "flaggedMeanPct": float(np.mean([row["coverage"] for row in mine]))})
    return entries


def clean_entries(rows: list[dict]) -> list[dict]:
    entries = []
    for group, noisy in (("noise-free", False), ("noisy", True)):
        for detector in DETECTORS:
            mine = [row for row in rows if row["detector"] == detector and row["category"] == "clean"
                    and row["sample"].endswith("+noise") == noisy]
            worst = max(mine, key=lambda row: row["coverage"])
            changed = min(mine, key=lambda row: row["psnrOutIn"])
            entry = {"bench": "restore_quality", "set": "clean", "group": group, "detector": detector,
                     "samples": len(mine), "coverageMeanPct": float(np.mean([row["coverage"] for row in mine])),
                     "coverageWorstPct": worst["coverage"], "coverageWorstSample": worst["sample"],
                     "psnrOutInWorstDb": changed["psnrOutIn"], "psnrOutInWorstSample": changed["sample"]}
            if noisy:
                entry["vsNoiseFreeWorstDb"] = min(row["vsNoiseFree"] for row in mine)
            entries.append(entry)
    return entries


def speed_entries(seconds: dict[str, list[float]], samples: list[Sample]) -> list[dict]:
    megapixels = sum(sample.damaged.shape[0] * sample.damaged.shape[1] for sample in samples) / 1e6
    return [{"bench": "restore_quality", "set": "speed", "detector": name, "megapixels": megapixels,
             "secondsPerMegapixel": sum(values) / megapixels} for name, values in seconds.items()]


# --- printing -----------------------------------------------------------------------------------

def _value(number: float | None, form: str) -> str:
    return "-" if number is None else format(number, form)


def print_tables(entries: list[dict], rows: list[dict]) -> None:
    print(f"\n{'damage':8s} {'detector':12s} {'n':>2s} {'recall':>6s} {'prec':>5s} {'gain min':>8s} {'mean':>6s} "
          f"{'undamaged':>9s} {'flagged%':>8s}")
    for entry in (e for e in entries if e["set"] == "damaged"):
        print(f"{entry['category']:8s} {entry['detector']:12s} {entry['samples']:2d} {entry['recall']:6.2f} "
              f"{_value(entry['precision'], '5.2f'):>5s} {entry['gainMinDb']:+8.1f} {entry['gainMeanDb']:+6.1f} "
              f"{entry['undamagedWorstDb']:+9.2f} {entry['flaggedMeanPct']:8.2f}")
    print(f"\n{'clean set':10s} {'detector':12s} {'cov mean%':>9s} {'cov worst%':>10s} {'(sample)':18s} "
          f"{'PSNR(out,in) worst':>18s} {'(sample)':18s} {'vs noise-free worst':>19s}")
    for entry in (e for e in entries if e["set"] == "clean"):
        print(f"{entry['group']:10s} {entry['detector']:12s} {entry['coverageMeanPct']:9.2f} "
              f"{entry['coverageWorstPct']:10.2f} {entry['coverageWorstSample']:18s} {entry['psnrOutInWorstDb']:18.1f} "
              f"{entry['psnrOutInWorstSample']:18s} {_value(entry.get('vsNoiseFreeWorstDb'), '+19.2f'):>19s}")
    print_clean_coverage(rows)
    for entry in (e for e in entries if e["set"] == "speed"):
        print(f"{entry['detector']:12s} {entry['secondsPerMegapixel']:6.2f} s/Mpx over {entry['megapixels']:.1f} Mpx")


def print_clean_coverage(rows: list[dict]) -> None:
    """Percent flagged per clean source, noise-free / noisy, for each detector."""
    print(f"\n{'coverage % (noise-free / noisy)':32s}" + "".join(f"{name:>16s}" for name in DETECTORS))
    by_key = {(row["sample"], row["detector"]): row["coverage"] for row in rows if row["category"] == "clean"}
    for source in dict.fromkeys(row["sample"].removesuffix("+noise") for row in rows if row["category"] == "clean"):
        cells = [f"{by_key[source, name]:7.2f} /{by_key[source + '+noise', name]:6.2f}" for name in DETECTORS]
        print(f"{source:32s}" + "".join(f"{cell:>16s}" for cell in cells))
    print()


# --- crops for people ---------------------------------------------------------------------------

HIT, FALSE_ALARM, MISSED = (255, 255, 255), (255, 60, 40), (60, 120, 255)


def save_crops(directory: Path, samples: list[Sample], kept: dict, rows: list[dict], run: str) -> None:
    """One strip per kept sample: damaged | truth | per detector: repaired, mask; and index.md.
    ``run`` says what ran (the "new" column's implementation, the fill)."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [INDEX_HEAD.replace("{run}", run)]
    for sample in (s for s in samples if s.name in CROP_SAMPLES):
        top, left = _window(sample, kept)
        file = sample.name.replace("/", "-").replace("@", "-x").replace("+", "-") + ".jpg"
        _strip(sample, kept, top, left).save(directory / file, quality=88)
        lines.append(_index_entry(sample, file, top, left, rows))
    (directory / "index.md").write_text("\n".join(lines) + "\n")


def _window(sample: Sample, kept: dict) -> tuple[int, int]:
    """The CROP x CROP window with the most true pixels, or on a clean photo the most flagged."""
    weight = sample.truth.astype(np.float32)
    if not weight.any():
        weight = sum(kept[sample.name, name][0].astype(np.float32) for name in ("new", "today"))
    if not np.any(weight):
        return (sample.truth.shape[0] - CROP) // 2, (sample.truth.shape[1] - CROP) // 2
    totals = cv2.boxFilter(weight, -1, (CROP, CROP), anchor=(0, 0), normalize=False, borderType=cv2.BORDER_CONSTANT)
    totals = totals[: weight.shape[0] - CROP + 1, : weight.shape[1] - CROP + 1]
    top, left = np.unravel_index(int(np.argmax(totals)), totals.shape)
    return int(top), int(left)


def _strip(sample: Sample, kept: dict, top: int, left: int) -> Image.Image:
    window = (slice(top, top + CROP), slice(left, left + CROP))
    truth = np.repeat(sample.truth[window][..., None], 3, axis=2)
    panels = [("damaged", _eight(sample.damaged[window])), ("true mask", _eight(truth))]
    for name in DETECTORS:
        mask, out = kept[sample.name, name]
        panels += [(f"{name}: repaired", _eight(out[window])), (f"{name}: mask", _coloured(mask, sample.truth)[window])]
    strip = Image.new("RGB", (len(panels) * (CROP + 4), CROP + 16), (255, 255, 255))
    draw, font = ImageDraw.Draw(strip), ImageFont.truetype(f"{matplotlib.get_data_path()}/fonts/ttf/DejaVuSans.ttf", 10)
    for index, (label, pixels) in enumerate(panels):
        strip.paste(Image.fromarray(pixels), (index * (CROP + 4), 16))
        draw.text((index * (CROP + 4) + 2, 2), label, font=font, fill=(0, 0, 0))
    return strip


def _eight(rgb: np.ndarray) -> np.ndarray:
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def _coloured(mask: np.ndarray, truth: np.ndarray) -> np.ndarray:
    picture = np.zeros((*mask.shape, 3), np.uint8)
    picture[mask & near(truth, TOLERANCE)] = HIT
    picture[mask & ~near(truth, TOLERANCE)] = FALSE_ALARM
    picture[truth & ~near(mask, TOLERANCE)] = MISSED
    return picture


INDEX_HEAD = """# Restore quality: before/after crops

Made by `bench/restore_quality.py --crops docs/restore-quality` (the held-out set of
`bench/heldout_damage.py`; photos from scikit-learn and matplotlib). Each strip is a {crop} x {crop} px
crop at 1:1, left to right: the damaged input, the true mask, then for each detector (`today` =
straight-line `scratch_mask`, `snapotter` = the peer's line top-hat, `new` = `detect_damage`,
`conservative` = the same with `damageDetector: "conservative"`) the repaired result and its
mask. Mask colours: white = flagged within 2 px of true damage, red = flagged where there is none
(false alarm), blue = true damage with nothing flagged within 2 px
(missed). Figures under each crop are for the whole sample.

This run: {run}.
""".replace("{crop}", str(CROP))


def _index_entry(sample: Sample, file: str, top: int, left: int, rows: list[dict]) -> str:
    mine = {row["detector"]: row for row in rows if row["sample"] == sample.name}
    height, width = sample.damaged.shape[:2]
    where = f"crop at x {left}-{left + CROP}, y {top}-{top + CROP} of {width} x {height} px"
    head = f"\n## {sample.name}: [{file}]({file})\n\n{sample.category}, {sample.notes}; {where}.\n"
    if sample.category == "clean":
        return head + "".join(f"\n- {name}: {mine[name]['coverage']:.2f}% flagged" for name in DETECTORS)
    return head + "".join(
        f"\n- {name}: recall {row['found'] / row['truePixels']:.2f}, "
        f"precision {_value(row['right'] / row['flagged'] if row['flagged'] else None, '.2f')}, "
        f"gain {row['gain']:+.1f} dB, undamaged {row['undamaged']:+.2f} dB"
        for name, row in mine.items())


def main() -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--crops", type=Path, default=Path(tempfile.gettempdir()) / "restora-restore-quality")
    parser.add_argument("--json", type=Path, help="also write the entries here as a JSON list")
    args = parser.parse_args()
    fill, fill_name = product_fill, "pipelines.inpainting.fill_damage"
    samples = damaged_set(args.seed) + clean_set(args.seed)
    run = f"seed {args.seed}; new = pipelines.damage_detection.detect_damage; fill = {fill_name}"
    print(f"{len(samples)} held-out samples; {run}", flush=True)
    rows, seconds, kept = evaluate(samples, fill, set(CROP_SAMPLES))
    entries = damage_entries(rows) + clean_entries(rows) + speed_entries(seconds, samples)
    for entry in (e for e in entries if e["detector"] == "new"):
        entry["implementation"] = "pipelines.damage_detection.detect_damage"
    print_tables(entries, rows)
    print(f"fill methods used: {sorted({row['fill'] for row in rows})}")
    save_crops(args.crops, samples, kept, rows, run)
    print(f"crops and index.md: {args.crops}\nmachine-readable entries (JSON lines):")
    for entry in entries:
        print(json.dumps(entry))
    if args.json:
        args.json.write_text(json.dumps(entries, indent=1))
    record_headline(entries)
    return entries


def record_headline(entries: list[dict]) -> None:
    """The shipped detector's figures on all damaged samples, the clean sets and its speed."""
    for entry in entries:
        if entry["detector"] != "new":
            continue
        if entry["set"] == "damaged" and entry["category"] == "all":
            record("restore.detection.recall", entry["recall"], "fraction", "true mask")
            record("restore.detection.precision", entry["precision"] or 0.0, "fraction", "true mask")
            record("restore.gain_min", entry["gainMinDb"], "dB", "damaged input")
            record("restore.undamaged_worst", entry["undamagedWorstDb"], "dB", "damaged input")
        elif entry["set"] == "clean":
            record(f"restore.clean_{entry['group']}.coverage_worst", entry["coverageWorstPct"], "%")
        elif entry["set"] == "speed":
            record("restore.detection.seconds_per_mpx", entry["secondsPerMegapixel"], "s/Mpx")


if __name__ == "__main__":
    main()
