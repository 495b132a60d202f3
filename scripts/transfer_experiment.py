#!/usr/bin/env python
"""Transfer experiment (#13): does pretraining on other classes help when only 50 images per class are labelled?

    python scripts/transfer_experiment.py                  # the full experiment, about 15 minutes on 2 CPU cores
    python scripts/transfer_experiment.py --smoke          # a tiny end-to-end check (CI)

Fashion-MNIST is split by class. Phase 1 pretrains ghostnet_050 on the five "source" classes 0-4 (T-shirt/top,
trouser, pullover, dress, coat). Phase 2 fine-tunes those weights, classifier re-initialised, on the five "target"
classes 5-9 (sandal, shirt, sneaker, bag, ankle boot) with only `--shots` train images per class (default 50, i.e.
250 images). Phase 3 trains the same model from random weights on the same 250 images with the same budget.
Both are validated on every test image of the target classes (5,000).

Same budget means: the same images, epochs, batch size, steps, optimizer (AdamW), cosine schedule with the same
warmup, augmentation and seed. The one difference is the usual fine-tuning convention for the learning rate: the
from-scratch run uses the demo recipe's peak lr (`--lr`, 0.005, tuned for training from random weights), the
fine-tuned run a 5x smaller lr for the pretrained layers (`--finetune_lr`, 0.001) and the recipe's lr for its new
classifier (`--head_lr_scale` 5: 0.001 x 5 = 0.005), so the pretrained features are adjusted, not overwritten.

The settings come from configs/demo/ghostnet_050_fashion_mnist_cpu.yaml (28 px, whole image + flips, AdamW,
label smoothing 0.05). Pretraining is sized for a busy 2-core machine: all 30,000 train images of the source
classes for `--pretrain_epochs` 2.

Writes the ImageFolder subsets under `--data_dir` (default data/transfer: `source/` and `target/`, each with
`train/<class>/*.png` and `val/<class>/*.png`; written once, reused while the selection is the same), the runs under
`--output_dir` (default runs/transfer: `pretrain/`, `finetune/`, `scratch/`, each a train.py run directory with the
validate.py result), prints a result table and writes `<output_dir>/results.json`. train.py and validate.py run in
this process, through their `main`. Source data: the IDX files of the Debian package `dataset-fashion-mnist`
(`--src`, default /usr/share/datasets/fashion-mnist).
"""
import argparse
import json
import os
import sys
import time
from typing import Any, Dict, List, Optional

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))

from prepare_fashion_mnist import CLASSES, DEFAULT_SRC, FILES, find_source, read_idx  # noqa: E402

from mindghost import runtime  # noqa: E402
from mindghost.errors import UsageError  # noqa: E402

RECIPE = os.path.join(ROOT, "configs", "demo", "ghostnet_050_fashion_mnist_cpu.yaml")
SOURCE_CLASSES = (0, 1, 2, 3, 4)
TARGET_CLASSES = (5, 6, 7, 8, 9)


def load_split(src: str, split: str):
    """(images uint8 [N, 28, 28], labels uint8 [N]) of Fashion-MNIST's 'train' or 'val' (= test) file pair."""
    img_file, lbl_file = FILES[split]
    images, labels = read_idx(os.path.join(src, img_file)), read_idx(os.path.join(src, lbl_file))
    if len(images) != len(labels):
        raise UsageError(f"{img_file}: {len(images)} images but {len(labels)} labels; re-install the source files")
    return images, labels


def pick(labels: np.ndarray, classes, per_class: int, rng: Optional[np.random.Generator]) -> Dict[int, np.ndarray]:
    """Indices of `per_class` images of each class (0 = all): a random draw with `rng`, else the first ones."""
    chosen = {}
    for c in classes:
        idx = np.flatnonzero(labels == c)
        n = len(idx) if per_class <= 0 else per_class
        if n > len(idx):
            raise UsageError(f"class {c} has {len(idx)} images, fewer than the {n} asked for; lower the count")
        chosen[c] = np.sort(rng.choice(idx, n, replace=False)) if rng is not None else idx[:n]
    return chosen


def write_imagefolder(root: str, images: np.ndarray, chosen: Dict[int, np.ndarray]) -> int:
    """`root/<class name>/<index>.png` for the chosen indices; returns the number of images written."""
    from PIL import Image

    for c, idx in chosen.items():
        folder = os.path.join(root, CLASSES[c])
        os.makedirs(folder, exist_ok=True)
        for i in idx:
            Image.fromarray(images[i], mode="L").save(os.path.join(folder, f"{i:05d}.png"), compress_level=1)
    return sum(len(v) for v in chosen.values())


def prepare_data(args) -> Dict[str, Any]:
    """Write source/ and target/ ImageFolder trees; a tree whose `.selection` matches the request is reused.
    The target's train images are a seeded random draw; the source's, the first of each class; val: all (or the
    first `val_per_class` with --smoke)."""
    src = find_source(args.src)
    train, val = load_split(src, "train"), load_split(src, "val")
    plan = {
        "source": {"train": pick(train[1], SOURCE_CLASSES, args.pretrain_per_class, None),
                   "val": pick(val[1], SOURCE_CLASSES, args.val_per_class, None)},
        "target": {"train": pick(train[1], TARGET_CLASSES, args.shots, np.random.default_rng(args.seed)),
                   "val": pick(val[1], TARGET_CLASSES, args.val_per_class, None)},
    }
    counts = {}
    for name, splits in plan.items():
        root = os.path.join(args.data_dir, name)
        selection = {"src": os.path.abspath(src),
                     **{s: {CLASSES[c]: [int(i) for i in idx] for c, idx in chosen.items()}
                        for s, chosen in splits.items()}}
        marker = os.path.join(root, ".selection.json")
        counts[name] = {s: sum(len(v) for v in chosen.values()) for s, chosen in splits.items()}
        if os.path.isfile(marker):
            with open(marker) as fh:
                if json.load(fh) == selection:
                    print(f"{root}: already written ({counts[name]['train']} train, {counts[name]['val']} val images)")
                    continue
            raise UsageError(f"'{root}' holds another selection of images (other --shots, --pretrain_per_class, "
                             f"--val_per_class or --seed); delete it or pass another --data_dir")
        if os.path.exists(root) and os.listdir(root):
            raise UsageError(f"'{root}' exists and was not written by this script; delete it or "
                             "pass another --data_dir")
        for split, chosen in splits.items():
            images = train[0] if split == "train" else val[0]
            write_imagefolder(os.path.join(root, split), images, chosen)
        with open(marker, "w") as fh:
            json.dump(selection, fh)
        print(f"{root}: wrote {counts[name]['train']} train, {counts[name]['val']} val images")
    return counts


def common_args(args) -> List[str]:
    """train.py / validate.py flags shared by every phase (on top of the demo recipe); validate.py offers only the
    options validation uses."""
    out = ["-c", RECIPE, "--num_classes", str(len(TARGET_CLASSES)), "--image_size", str(args.image_size),
           "--mode", args.mode, "--seed", str(args.seed)]
    if args.smoke:
        out += ["--progress", "False"]
    return out


def train_args(args, phase: str, data: str, epochs: int, batch: int, lr: float, warmup: float) -> List[str]:
    return common_args(args) + (["--plot", "False"] if args.smoke else []) + [
        "--data_dir", os.path.join(args.data_dir, data), "--output_dir", os.path.join(args.output_dir, phase),
        "--epochs", str(epochs), "--batch_size", str(batch), "--lr", f"{lr:g}", "--warmup_epochs", f"{warmup:g}",
        "--val_every", "0", "--keep_checkpoint_max", "1", "--overwrite", "True"]


def validate(validate_mod, args, phase: str, data: str, ckpt: str) -> Dict[str, Any]:
    return validate_mod.main(common_args(args) + [
        "--data_dir", os.path.join(args.data_dir, data), "--ckpt_path", ckpt,
        "--eval_batch_size", str(args.eval_batch_size), "--output_dir", os.path.join(args.output_dir, phase)])


def load_entry_point(name: str):
    """train.py / validate.py as modules, to call their main() in this process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"mindghost_{name}", os.path.join(ROOT, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed(fn, *a):
    t0 = time.perf_counter()
    result = fn(*a)
    return result, time.perf_counter() - t0


def run(args) -> Dict[str, Any]:
    t_start = time.perf_counter()
    counts, t_data = timed(prepare_data, args)
    train_mod, validate_mod = load_entry_point("train"), load_entry_point("validate")

    # phase 1: pretrain on the source classes
    pre_argv = train_args(args, "pretrain", "source", args.pretrain_epochs, args.pretrain_batch_size, args.lr,
                          args.pretrain_warmup)
    pre, t_pre = timed(train_mod.main, pre_argv)
    pre_ckpt = pre["last_checkpoint"]
    pre_val, t_pre_val = timed(validate, validate_mod, args, "pretrain", "source", pre_ckpt)

    # phases 2 and 3: the same 250 images, the same epochs / batch / schedule; only the lr differs (module doc)
    ft_argv = train_args(args, "finetune", "target", args.epochs, args.batch_size, args.finetune_lr,
                         args.warmup_epochs) + [
        "--ckpt_path", pre_ckpt, "--new_classifier", "True", "--head_lr_scale", f"{args.head_lr_scale:g}"]
    ft, t_ft = timed(train_mod.main, ft_argv)
    ft_val, t_ft_val = timed(validate, validate_mod, args, "finetune", "target", ft["last_checkpoint"])

    sc_argv = train_args(args, "scratch", "target", args.epochs, args.batch_size, args.lr, args.warmup_epochs)
    sc, t_sc = timed(train_mod.main, sc_argv)
    sc_val, t_sc_val = timed(validate, validate_mod, args, "scratch", "target", sc["last_checkpoint"])

    def row(name, argv, summary, val, t_train, t_val, train_images, val_images):
        return {"phase": name, "train_images": train_images, "epochs": summary["epochs"],
                "steps": summary["global_step"], "val_images": val["num_samples"], "val_classes": val_images,
                "top1": round(val["top1"], 2), "top5": round(val["top5"], 2), "val_loss": round(val["loss"], 4),
                "train_wall_s": round(t_train, 1), "validate_wall_s": round(t_val, 1),
                "checkpoint": summary["last_checkpoint"], "train_argv": argv}

    src_names = [CLASSES[c] for c in SOURCE_CLASSES]
    tgt_names = [CLASSES[c] for c in TARGET_CLASSES]
    rows = [row("pretrain (source classes)", pre_argv, pre, pre_val, t_pre, t_pre_val, counts["source"]["train"],
                src_names),
            row("fine-tune (target classes)", ft_argv, ft, ft_val, t_ft, t_ft_val, counts["target"]["train"],
                tgt_names),
            row("from scratch (target classes)", sc_argv, sc, sc_val, t_sc, t_sc_val, counts["target"]["train"],
                tgt_names)]
    results = {"smoke": args.smoke, "model": "ghostnet_050", "source_classes": src_names, "target_classes": tgt_names,
               "shots_per_class": args.shots, "seed": args.seed, "recipe": os.path.relpath(RECIPE, ROOT),
               "phases": rows, "finetune_minus_scratch_top1": round(ft_val["top1"] - sc_val["top1"], 2),
               "data_wall_s": round(t_data, 1), "total_wall_s": round(time.perf_counter() - t_start, 1)}
    os.makedirs(args.output_dir, exist_ok=True)
    out = os.path.join(args.output_dir, "results.json")
    with open(out, "w") as fh:
        json.dump(results, fh, indent=2)
    print_table(results)
    print(f"results written to {out}")
    return results


def print_table(results: Dict[str, Any]) -> None:
    # no top-5 column: with five classes it is 100% for any model (it stays in the JSON)
    head = f"{'phase':<31}{'train imgs':>11}{'epochs':>7}{'steps':>7}{'val imgs':>9}{'top-1':>8}{'val loss':>9}" \
           f"{'train s':>9}{'val s':>7}"
    print("\n" + head)
    for r in results["phases"]:
        print(f"{r['phase']:<31}{r['train_images']:>11}{r['epochs']:>7}{r['steps']:>7}{r['val_images']:>9}"
              f"{r['top1']:>8.2f}{r['val_loss']:>9.3f}{r['train_wall_s']:>9.0f}{r['validate_wall_s']:>7.0f}")
    print(f"fine-tune - scratch: {results['finetune_minus_scratch_top1']:+.2f} top-1 points; data "
          f"{results['data_wall_s']:.0f} s, total {results['total_wall_s']:.0f} s")


def build_parser() -> argparse.ArgumentParser:
    from mindghost.cli import add_alias, add_args

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--src", default=DEFAULT_SRC, help="folder with Fashion-MNIST's IDX .gz files")
    add_args(p, "data_dir", "output_dir", defaults={"data_dir": "data/transfer", "output_dir": "runs/transfer"},
             helps={"data_dir": "where the ImageFolder subsets are written",
                    "output_dir": "run directories and results.json"})
    p.add_argument("--shots", type=int, default=50, help="target train images per class")
    p.add_argument("--pretrain_per_class", type=int, default=0, help="source train images per class (0 = all 6,000)")
    p.add_argument("--val_per_class", type=int, default=0, help="test images per class (0 = all 1,000)")
    p.add_argument("--pretrain_epochs", type=int, default=2)
    p.add_argument("--pretrain_batch_size", type=int, default=128, help="batch of the pretraining")
    add_alias(p, "pretrain_batch", "pretrain_batch_size", spec={"type": int})
    p.add_argument("--pretrain_warmup", type=float, default=0.2, help="warmup epochs of the pretraining")
    add_args(p, "epochs", "batch_size", "warmup_epochs", "lr",
             defaults={"epochs": 40, "batch_size": 50, "warmup_epochs": 2.0, "lr": 0.005},
             helps={"epochs": "epochs of the fine-tune and from-scratch runs",
                    "batch_size": "batch of the fine-tune and from-scratch runs",
                    "warmup_epochs": "warmup epochs of the fine-tune and from-scratch runs",
                    "lr": "peak lr of pretraining and of the from-scratch run"})
    add_alias(p, "warmup", "warmup_epochs")
    p.add_argument("--finetune_lr", type=float, default=0.001, help="peak lr of the pretrained layers when fine-tuning")
    add_args(p, "head_lr_scale", "image_size", "eval_batch_size", "mode", "seed", "smoke",
             defaults={"head_lr_scale": 5.0, "image_size": 28, "eval_batch_size": 250},
             helps={"head_lr_scale": "the new classifier's lr = finetune_lr x this",
                    "seed": "the target images drawn and every run's seed",
                    "smoke": "tiny check that it all works: 2 images per class, 1 epoch, 32 px, PyNative; its "
                             "numbers mean nothing (default --data_dir/--output_dir get a _smoke suffix)"})
    return p


def parse_args(argv: Optional[List[str]]):
    p = build_parser()
    args = p.parse_args(argv)
    if args.smoke:
        # one step per run: in PyNative the first step (kernel set-up) is most of the time
        args.shots = args.pretrain_per_class = args.val_per_class = 2
        args.pretrain_epochs = args.epochs = 1
        args.pretrain_batch_size = args.batch_size = args.eval_batch_size = 10
        args.pretrain_warmup = args.warmup_epochs = 0
        args.image_size, args.mode = 32, "pynative"
        if args.data_dir == p.get_default("data_dir"):
            args.data_dir += "_smoke"
        if args.output_dir == p.get_default("output_dir"):
            args.output_dir += "_smoke"
    for name in ("shots", "pretrain_epochs", "epochs", "batch_size", "pretrain_batch_size", "image_size",
                 "eval_batch_size"):
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name} must be > 0, got {getattr(args, name)}")
    return args


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    return run(parse_args(argv))


if __name__ == "__main__":
    runtime.run_main(main, sys.argv[1:])
