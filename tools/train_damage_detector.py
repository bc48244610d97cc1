"""Train the two learned damage detectors shipped in pipelines/models/weights/.

    T=tools/train_damage_detector.py
    .venv/bin/python $T                                 # damage-unet.pt, the standard one (35-56 min on 2 cores)
    .venv/bin/python $T --init pipelines/models/weights/damage-unet.pt \
        --structure-fraction 0.25 --lr 1e-3            # damage-unet-conservative.pt (36 min)
    .venv/bin/python $T --steps 50 --out /tmp/smoke.pt  # a smoke run

The conservative detector is the standard one fine-tuned, so the first command comes before the
second. ``--init`` starts from a checkpoint's params instead of random ones (the one-cycle
learning-rate schedule starts afresh).

CPU only, fixed seeds: the same command on the same torch build gives the same weights (bf16
autocast with channels_last, which uses AMX where the CPU has it). Training data: crops of
scikit-image's bundled photos with synthetic damage from tools/synth_damage.py, drawn afresh for
every step; validation: a fixed set drawn with another seed. No other photos are used. With
``--structure-fraction`` that share of the crops (training and validation) also carry clean
letters, dials, lattices, hatching or cloth from tools/synth_structures.py, labelled undamaged.
With ``--second-generator`` (an experiment, no shipped detector uses it) that share of the crops,
training and validation alike, is drawn by tools/validation_damage.py instead: all damaged, no
structures, and that generator then no longer judges the result as damage never seen. With
``--scene-fraction`` (an experiment) that share of the crops get thin lines drawn into the scene
from tools/synth_scenes.py (lit beam edges, railings, field tracks; ``--scene-kinds`` picks some),
labelled undamaged.
The checkpoint is written (fp16, ~0.7 MB) whenever validation F1 improves.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.models.damage_unet import CONSERVATIVE_WEIGHTS, PACKAGED_WEIGHTS, DamageUNet  # noqa: E402
from tools.synth_damage import load_photos, make_sample  # noqa: E402
from tools.synth_scenes import SCENES  # noqa: E402
from tools.validation_damage import make_validation_sample  # noqa: E402

log = logging.getLogger("train_damage_detector")


@dataclasses.dataclass(frozen=True)
class CropMix:
    """What the crops carry besides synth_damage's damage and photos: the shares with clean
    structures, with the second generator's crops instead, and with scene lines (of these kinds;
    None: all). Every share at 0 is the standard detector's recipe."""
    structure_fraction: float = 0.0
    second_generator: float = 0.0
    scene_fraction: float = 0.0
    scene_kinds: tuple[str, ...] | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "CropMix":
        return cls(args.structure_fraction, args.second_generator, args.scene_fraction,
                   tuple(args.scene_kinds) if args.scene_kinds else None)


def batch(rng: np.random.Generator, photos, size: int, count: int,
          mix: CropMix = CropMix()) -> tuple[torch.Tensor, torch.Tensor]:
    samples = [_sample(rng, photos, size, mix) for _ in range(count)]
    images = torch.from_numpy(np.stack([s.image for s in samples])).permute(0, 3, 1, 2)
    masks = torch.from_numpy(np.stack([s.mask for s in samples])).unsqueeze(1).float()
    return images.contiguous(memory_format=torch.channels_last), masks


def _sample(rng: np.random.Generator, photos, size: int, mix: CropMix):
    # At second_generator 0 no random number is drawn for it: the packaged recipes' crops are unchanged.
    if mix.second_generator and rng.random() < mix.second_generator:
        return make_validation_sample(rng, photos, size)
    return make_sample(rng, photos, size, structure_fraction=mix.structure_fraction,
                       scene_fraction=mix.scene_fraction, scene_kinds=mix.scene_kinds)


def loss_fn(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """BCE (damaged pixels weighted up: they are a few percent of a crop) plus soft Dice."""
    bce = F.binary_cross_entropy_with_logits(logits, masks, pos_weight=torch.tensor(3.0))
    probs = torch.sigmoid(logits)
    dice = 1 - (2 * (probs * masks).sum() + 1) / (probs.sum() + masks.sum() + 1)
    return bce + 0.5 * dice


def evaluate(model: DamageUNet, validation: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    model.eval()
    hits = predicted = actual = 0.0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for images, masks in validation:
            found = model(images).float() > 0
            hits += float((found & (masks > 0)).sum())
            predicted += float(found.sum())
            actual += float(masks.sum())
    model.train()
    precision, recall = hits / max(predicted, 1), hits / max(actual, 1)
    return {"precision": precision, "recall": recall, "f1": 2 * precision * recall / max(precision + recall, 1e-9)}


def save(model: DamageUNet, path: Path, meta: dict) -> None:
    state = {name: value.half() if value.is_floating_point() else value for name, value in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    torch.save({"params": state, "meta": meta}, tmp)
    tmp.replace(path)


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    photos, mix = load_photos(), CropMix.from_args(args)
    validation = [batch(np.random.default_rng(10_000 + i), photos, args.size, args.batch, mix)
                  for i in range(args.val_batches)]
    rng = np.random.default_rng(args.seed)
    model = DamageUNet()
    if args.init is not None:  # fine-tune: start from a checkpoint of the same network
        model.load_state_dict({k: v.float() for k, v in torch.load(args.init, weights_only=True)["params"].items()})
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=args.steps, pct_start=0.1)
    best, started = -1.0, time.perf_counter()
    for step in range(1, args.steps + 1):
        images, masks = batch(rng, photos, args.size, args.batch, mix)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(images)
        loss = loss_fn(logits.float(), masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % args.eval_every == 0 or step == args.steps:
            scores = evaluate(model, validation)
            elapsed = time.perf_counter() - started
            log.info("step %d/%d loss %.4f val %s  %.0f s", step, args.steps, loss.item(),
                     {k: round(v, 3) for k, v in scores.items()}, elapsed)
            if scores["f1"] > best:
                best = scores["f1"]
                save(model, args.out, {"step": step, "seed": args.seed, "crop": args.size, **dataclasses.asdict(mix),
                                       "init": args.init.name if args.init else None, "lr": args.lr, **scores})
    log.info("done: best validation F1 %.3f, weights in %s", best, args.out)


# The packaged detectors' recipes: the settings that differ between them. All other settings
# (but --threads, which changes no result) must be the parser's defaults.
RECIPES = {PACKAGED_WEIGHTS: {"init": None, "structure_fraction": 0.0, "lr": 2e-3},
           CONSERVATIVE_WEIGHTS: {"init": PACKAGED_WEIGHTS, "structure_fraction": 0.25, "lr": 1e-3}}


def default_out(args: argparse.Namespace, defaults: dict) -> Path | None:
    """The packaged file these arguments reproduce (see the module's commands), or None: a run
    with any other setting must not replace a shipped detector unasked."""
    given = {**vars(args), "init": args.init.resolve() if args.init else None}
    for out, recipe in RECIPES.items():
        wanted = {**defaults, **recipe, "threads": args.threads, "out": None}
        if given == wanted:
            return out
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=192, help="crop side in pixels")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--val-batches", type=int, default=8)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--structure-fraction", type=float, default=0.0,
                        help="share of crops with clean thin-line structures (0.25: the conservative detector)")
    parser.add_argument("--second-generator", type=float, default=0.0,
                        help="share of crops drawn by tools/validation_damage.py instead (an experiment; it then "
                             "no longer judges the result as damage never seen)")
    parser.add_argument("--scene-fraction", type=float, default=0.0,
                        help="share of crops with thin lines drawn into the scene (tools/synth_scenes.py: lit "
                             "edges, railings, field tracks), labelled undamaged")
    parser.add_argument("--scene-kinds", nargs="+", choices=list(SCENES), default=None,
                        help="only these of the scene drawers (default: all)")
    parser.add_argument("--init", type=Path, default=None,
                        help="start from this checkpoint's params (fine-tuning) instead of random ones")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: the packaged file of the detector these arguments train")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = parser.parse_args()
    if args.out is None:
        args.out = default_out(args, {name: parser.get_default(name) for name in vars(args)})
    if args.out is None:
        parser.error("these arguments reproduce no packaged detector: give --out")
    train(args)


if __name__ == "__main__":
    main()
