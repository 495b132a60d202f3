#!/usr/bin/env python
"""The GhostNet paper's Ghost-module ablation (its Sec. 4.1: kernel d of the cheap operation, ratio s), and the other
cheap operations (`cheap_op`: affine, mixed, haar), on Fashion-MNIST with the demo recipe, on a CPU budget.

    python scripts/ablation_experiment.py --data_dir data/fashion_mnist --output_dir runs/ablation   # ~1 h, 2 cores
    python scripts/ablation_experiment.py --smoke --output_dir /tmp/ablation_smoke   # plumbing: 2 settings, 1 seed

Settings (each a separate `train.py` process on configs/demo/ghostnet_050_fashion_mnist_cpu.yaml, ghostnet_050):
d in {1, 3, 5, 7} at s = 2; s in {2, 3, 4, 5} at d = 3; cheap_op in {affine, mixed, haar} at s = 2 (dw at s = 2,
d = 3 is the shared baseline) — 10 settings, each with every seed of `--seeds`. Every run sees the same
`--train_samples` images per epoch (a seeded random subset) for `--epochs` epochs and is scored on all 10,000 test
images. Params (trainable, 10 classes) and MACs (at the run's image size) come from `mindghost.tools.profile`.
Writes <output_dir>/results.json and prints a Markdown table: per setting, params, MACs, top-1 mean and spread
(max - min over seeds) and the train loop's seconds.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(ROOT, "configs", "demo", "ghostnet_050_fashion_mnist_cpu.yaml")
MODEL = "ghostnet_050"

# (group, label, model_kwargs); ("dw", s=2, d=3) is the baseline each group is read against
SETTINGS = (
    [("kernel d (s = 2)", f"d={d}", {"dw_size": d}) for d in (1, 3, 5, 7)]
    + [("ratio s (d = 3)", f"s={s}", {"ratio": s}) for s in (3, 4, 5)]
    + [("cheap_op (s = 2)", op, {"cheap_op": op}) for op in ("affine", "mixed", "haar")]
)


def build_parser() -> argparse.ArgumentParser:
    from mindghost.cli import add_args

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_args(p, "data_dir", "output_dir", "train_samples", "epochs", "val_samples", "smoke",
             defaults={"data_dir": os.path.join(ROOT, "data", "fashion_mnist"),
                       "output_dir": os.path.join(ROOT, "runs", "ablation"), "train_samples": 6000, "epochs": 3,
                       "val_samples": 0},
             helps={"train_samples": "train images per epoch (a seeded subset)",
                    "val_samples": "0 = all 10,000 test images",
                    "output_dir": "folder of the runs (one sub-folder each) and results.json",
                    "smoke": "two settings, one seed, a few steps: the plumbing only"})
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="one run per setting and seed")
    return p


def parse_args(argv: List[str]) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    args.extra = []
    if args.smoke:
        args.train_samples, args.epochs, args.seeds, args.val_samples = 64, 1, [0], 64
        args.extra = ["--batch_size", "16", "--eval_batch_size", "16"]  # the recipe's 128 needs more images
    return args


def profile(kwargs: Dict, image_size: int) -> Dict[str, int]:
    from mindghost import create_model
    from mindghost.tools.profile import count_macs, count_params

    model = create_model(MODEL, num_classes=10, **kwargs)
    return {"params": count_params(model)["trainable"], "macs": count_macs(model, (3, image_size, image_size))}


def run(args: argparse.Namespace, label: str, kwargs: Dict, seed: int) -> Dict:
    out = os.path.join(args.output_dir, f"{label}-seed{seed}")
    pairs = [f"{k}={v}" for k, v in kwargs.items()]
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), "-c", RECIPE, "--data_dir", args.data_dir,
           "--output_dir", out, "--overwrite", "True", "--seed", str(seed), "--train_samples", str(args.train_samples),
           "--epochs", str(args.epochs), "--val_every", str(args.epochs), "--val_samples", str(args.val_samples),
           "--progress", "False", "--plot", "False", *args.extra] + (["--model_kwargs", *pairs] if pairs else [])
    print("$ " + " ".join(cmd[1:]), flush=True)
    t0 = time.time()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    with open(os.path.join(out, "summary.json")) as fh:
        summary = json.load(fh)
    row = {"label": label, "seed": seed, "model_kwargs": kwargs, "top1": summary["last"]["val_top1"],
           "train_time_s": round(summary["train_time_s"], 1), "wall_s": round(time.time() - t0, 1)}
    print(json.dumps(row), flush=True)
    return row


def main(argv: List[str]) -> int:
    args = parse_args(argv)
    if not os.path.isdir(os.path.join(args.data_dir, "train")):
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "prepare_fashion_mnist.py"),
                        "--output_dir", args.data_dir], check=True)
    import yaml

    with open(RECIPE) as fh:
        image_size = int(yaml.safe_load(fh)["image_size"])
    settings = [("baseline", "dw s=2 d=3", {})] + list(SETTINGS)
    if args.smoke:
        settings = [settings[0], settings[-1]]
    os.makedirs(args.output_dir, exist_ok=True)
    t0 = time.time()
    rows = []
    for seed in args.seeds:  # seed-major: a stopped run still has every setting once
        for _, label, kwargs in settings:
            rows.append(run(args, label, kwargs, seed))
    table = []
    for group, label, kwargs in settings:
        top1 = [r["top1"] for r in rows if r["label"] == label]
        times = [r["train_time_s"] for r in rows if r["label"] == label]
        table.append({"group": group, "label": label, "model_kwargs": kwargs, **profile(kwargs, image_size),
                      "top1_mean": round(statistics.mean(top1), 2), "top1_spread": round(max(top1) - min(top1), 2),
                      "top1": top1, "train_time_s": round(statistics.mean(times), 1)})
    result = {"args": vars(args), "image_size": image_size, "rows": table, "runs": rows,
              "total_wall_s": round(time.time() - t0, 1)}
    with open(os.path.join(args.output_dir, "results.json"), "w") as fh:
        json.dump(result, fh, indent=2)
    n = len(args.seeds)
    print(f"\n| setting | params | MACs at {image_size} px | top-1 mean ({n} seed{'s' if n > 1 else ''}) | spread | "
          "train loop s |\n|---|---|---|---|---|---|")
    for r in table:
        print(f"| {r['label']} | {r['params'] / 1e6:.3f}M | {r['macs'] / 1e6:.1f}M | {r['top1_mean']:.2f} | "
              f"{r['top1_spread']:.2f} | {r['train_time_s']:.0f} |")
    print(f"\ntotal {result['total_wall_s']:.0f} s; results in {os.path.join(args.output_dir, 'results.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
