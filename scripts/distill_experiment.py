#!/usr/bin/env python
"""Knowledge distillation on Fashion-MNIST, end to end on CPU: a teacher, then ghostnetv3_050 with and without KD
at the same budget. Writes <output_dir>/results.json and prints a Markdown table (top-1 on the test images, wall time).

    python scripts/distill_experiment.py --data_dir data/fashion_mnist --output_dir runs/distill  # ~20 min, 2 cores
    python scripts/distill_experiment.py --smoke --output_dir /tmp/distill_smoke  # plumbing: 64 images of one class

Each run is a separate `train.py` process on the demo recipe (configs/demo/ghostnet_050_fashion_mnist_cpu.yaml),
so the wall times include Python start, graph compile and the evaluation; train_time_s is the loop alone.
All runs share the image size: 48 px (the 28-px images upscaled), because GhostNetV3's DFC attention needs maps of
at least 2x2 after its 2x2 pooling, which 32 px does not give. The teacher (ghostnet_100, a GhostNet v1 1.0x) is
trained on more images and epochs than the students, the usual setting of distillation: a stronger model that
is too costly to deploy. Both students see the same `--train_samples` images per epoch for the same epochs;
the KD student adds the teacher's soft targets (temperature `--temperature`, weights 1 and 1 as the reference).
The data (`bash scripts/setup.sh` installs the Debian package; scripts/prepare_fashion_mnist.py writes the tree)
is written first when `--data_dir` does not exist.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(ROOT, "configs", "demo", "ghostnet_050_fashion_mnist_cpu.yaml")


def build_parser() -> argparse.ArgumentParser:
    from mindghost.cli import add_alias, add_args

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_args(p, "data_dir", "output_dir", "image_size",
             defaults={"data_dir": os.path.join(ROOT, "data", "fashion_mnist"),
                       "output_dir": os.path.join(ROOT, "runs", "distill"), "image_size": 48},
             helps={"output_dir": "one run directory per run under it, and results"})
    add_alias(p, "out", "output_dir")
    p.add_argument("--teacher", default="ghostnet_100")
    p.add_argument("--teacher_samples", type=int, default=8000, help="teacher: train images per epoch")
    p.add_argument("--teacher_epochs", type=int, default=2)
    p.add_argument("--student", default="ghostnetv3_050")
    add_args(p, "train_samples", "epochs", "val_samples", "batch_size", "kd_temperature", "smoke",
             defaults={"train_samples": 5000, "epochs": 2, "batch_size": 64},
             helps={"train_samples": "students: train images per epoch", "epochs": "students: epochs",
                    "val_samples": "test images evaluated: the first N in class-folder order, so only 0 (all "
                                   "10,000) measures accuracy"})
    add_alias(p, "temperature", "kd_temperature")
    return p


def parse_args(argv: List[str]) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    if args.smoke:
        args.teacher_samples = args.train_samples = 64
        args.teacher_epochs = args.epochs = 1
        args.val_samples = 64
        args.batch_size = 16
    return args


def train(args: argparse.Namespace, name: str, model: str, samples: int, epochs: int, extra: List[str]) -> Dict:
    out = os.path.join(args.output_dir, name)
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), "-c", RECIPE, "--data_dir", args.data_dir,
           "--output_dir", out, "--overwrite", "True", "--model", model, "--image_size", str(args.image_size),
           "--train_samples", str(samples), "--epochs", str(epochs), "--val_samples", str(args.val_samples),
           "--val_every", str(epochs), "--batch_size", str(args.batch_size), "--progress", "False",
           "--plot", "False", "--warmup_epochs", "0.2", *extra]
    print("$ " + " ".join(cmd[1:]), flush=True)
    t0 = time.time()
    subprocess.run(cmd, check=True, cwd=ROOT)
    wall = time.time() - t0
    with open(os.path.join(out, "summary.json")) as fh:
        summary = json.load(fh)
    last = summary["last"]
    row = {"run": name, "model": model, "train_samples": samples, "epochs": epochs, "top1": last["val_top1"],
           "top5": last["val_top5"], "wall_s": round(wall, 1), "train_time_s": round(summary["train_time_s"], 1),
           "checkpoint": os.path.join(out, "checkpoints", "last.ckpt")}
    if "train_kd_loss" in last:
        row["train_kd_loss"] = last["train_kd_loss"]
    print(json.dumps(row), flush=True)
    return row


def main(argv: List[str]) -> int:
    args = parse_args(argv)
    if not os.path.isdir(os.path.join(args.data_dir, "train")):
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "prepare_fashion_mnist.py"),
                        "--output_dir", args.data_dir], check=True)
    os.makedirs(args.output_dir, exist_ok=True)
    t0 = time.time()
    teacher = train(args, "teacher", args.teacher, args.teacher_samples, args.teacher_epochs, [])
    kd = ["--teacher", args.teacher, "--teacher_ckpt", teacher["checkpoint"],
          "--kd_temperature", str(args.kd_temperature), "--kd_weight", "1", "--label_weight", "1"]
    plain = train(args, "student", args.student, args.train_samples, args.epochs, [])
    distilled = train(args, "student_kd", args.student, args.train_samples, args.epochs, kd)
    rows = [teacher, plain, distilled]
    result = {"args": vars(args), "runs": rows, "total_wall_s": round(time.time() - t0, 1)}
    with open(os.path.join(args.output_dir, "results.json"), "w") as fh:
        json.dump(result, fh, indent=2)
    print(f"\n| run | model | train images x epochs | top-1 ({args.val_samples or 'all'} test images) | wall s | "
          "train loop s |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['model']} | {r['train_samples']} x {r['epochs']} | {r['top1']:.2f} | "
              f"{r['wall_s']:.0f} | {r['train_time_s']:.0f} |")
    print(f"\ntotal {result['total_wall_s']:.0f} s; results in {os.path.join(args.output_dir, 'results.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
