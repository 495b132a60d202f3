"""INT8 post-training quantization of a checkpoint for onnxruntime, with the configuration chosen on held-out data.

    python -m mindghost.tools.quantize --ckpt_path runs/demo/checkpoints/best.ckpt --data_dir data/fashion_mnist \
        [--output_dir quantized] [--calibration_samples 256] [--holdout_samples 500] [--search full|quick|none]

Steps: the checkpoint's inference form (re-parameterised, BatchNorm folded) is exported to fp32 ONNX with a
symbolic batch (`mindghost.tools.export`'s functions) and checked against the MindSpore forward; the
calibration images and a disjoint held-out set are drawn from the train split (seeded) and go through the
checkpoint's own eval preprocessing (validate.py's transform); `mindghost.deploy.quantize.search` writes a static
QDQ INT8 model for each candidate configuration and keeps the best on the held-out set; then the fp32 and INT8
files are evaluated on the val split with validate.py's pipeline and counting, and timed in onnxruntime (batch-1
latency, batch-32 throughput, on this machine, the two files interleaved). Output in `--output_dir`:
`<stem>_fp32.onnx`, `<stem>_int8.onnx`, each with the `.json` validate.py and predict read beside it
(preprocessing, classes; the INT8 one also its configuration), and `<stem>_quantize.json` with the whole report
(the printed table holds the same numbers).
"""
import argparse
import json
import os
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..deploy.export import machine_description
from ..errors import UsageError


def build_parser() -> argparse.ArgumentParser:
    from ..cli import add_args, str2bool

    p = argparse.ArgumentParser(prog="python -m mindghost.tools.quantize",
                                description="INT8 (QDQ) post-training quantization for onnxruntime, configuration "
                                            "chosen on held-out train images; fp32 vs INT8 accuracy and speed.")
    add_args(p, "ckpt_path", "model", "data_dir", "train_split", "val_split", "val_samples", "seed", "batch_size",
             "ema", "output_dir", "overwrite", "num_workers", "cpu_threads", "device",
             defaults={"model": None, "seed": 0, "batch_size": 32, "output_dir": "quantized"},
             helps={"ckpt_path": "checkpoint to quantize (mindghost, MindCV or converted)",
                    "model": "registered model name (default: the checkpoint's recorded one)",
                    "train_split": "split the calibration and held-out images come from",
                    "val_split": "split fp32 and INT8 are evaluated on",
                    "seed": "seed of the calibration / held-out draw",
                    "batch_size": "evaluation batch; also the throughput batch",
                    "ema": "quantize the EMA weights of a training checkpoint",
                    "output_dir": "output folder", "overwrite": "replace existing output files",
                    "cpu_threads": "onnxruntime threads; 0 = its default (all cores)",
                    "device": "MindSpore device of the export (quantization and timing run in onnxruntime on the CPU)"},
             ckpt_path={"required": True}, data_dir={"required": True})
    p.add_argument("--calibration_samples", type=int, default=256, help="train images the ranges are calibrated on")
    p.add_argument("--holdout_samples", type=int, default=500,
                   help="other train images the candidate configurations are compared on")
    p.add_argument("--search", default="full", choices=("full", "quick", "none"),
                   help="full: per-tensor/per-channel x MinMax/Entropy/Percentile, then fp32 groups one by one and "
                        "together; quick: MinMax only, then all groups fp32; none: per-tensor MinMax")
    p.add_argument("--reduce_range", type=str2bool, nargs="?", const=True, default=False,
                   help="7-bit weights (onnxruntime's advice for x86 CPUs without VNNI, where U8S8 can saturate)")
    p.add_argument("--repeats", type=int, default=20, help="timed runs at batch 1 (batch N: a quarter of it)")
    return p


def draw_train_images(cfg, setup, counts: Sequence[int], seed: int) -> List[Tuple[np.ndarray, np.ndarray]]:
    """Disjoint seeded random draws of `counts` images from the train split, each through the eval transform of
    `setup` (what validation applies): [(images (N, C, H, W) float32, labels (N,) int64), ...]."""
    import mindspore.dataset as ds

    from ..data import inspect_split
    from ..inference import eval_transforms

    _, total = inspect_split(cfg.data_dir, cfg.train_split)
    if sum(counts) > total:
        raise UsageError(f"--calibration_samples + --holdout_samples = {sum(counts)} is more than the {total} images "
                         f"of '{cfg.data_dir}/{cfg.train_split}'; ask for fewer")
    order = np.random.default_rng(seed).permutation(total)
    out = []
    start = 0
    for n in counts:
        indices = sorted(int(i) for i in order[start:start + n])
        start += n
        dataset = ds.ImageFolderDataset(os.path.join(cfg.data_dir, cfg.train_split),
                                        sampler=ds.SubsetSampler(indices), num_parallel_workers=1)
        dataset = dataset.map(eval_transforms(setup), input_columns="image")
        images, labels = [], []
        for image, label in dataset.create_tuple_iterator(num_epochs=1, output_numpy=True):
            images.append(image)
            labels.append(int(label))
        out.append((np.stack(images).astype(np.float32), np.asarray(labels, np.int64)))
    return out


def export_fp32(args, setup, stem: str) -> Dict[str, object]:
    """The BN-folded inference form of the checkpoint as `<stem>_fp32.onnx` with a symbolic batch, its export JSON,
    and the parity of onnxruntime (batch 1 and batch 2) against the MindSpore forward of the unfolded model."""
    import mindspore as ms

    from ..deploy.export import export_model
    from ..deploy.onnx import OnnxModel, make_batch_dynamic
    from ..inference import build_inference_model
    from ..models import max_diff
    from .export import onnx_opset

    shape = (1, setup.in_channels, setup.image_size, setup.image_size)
    # export's form: re-parameterised, BN folded, no CPU pass (a graph file holds plain cells)
    built = build_inference_model(args.ckpt_path, setup.model, ema=args.ema, fuse_bn="true", device="CPU",
                                  cpu_pass=False, keep_unfused=True)
    net = built.model
    x = np.random.default_rng(0).standard_normal((2,) + shape[1:]).astype(np.float32)
    reference = np.concatenate([built.unfused(ms.Tensor(x[i:i + 1])).asnumpy() for i in range(2)])
    fixed = export_model(net, x[:1], stem + "_fp32_b1", "onnx")
    path = stem + "_fp32.onnx"
    make_batch_dynamic(fixed, path)
    os.remove(fixed)
    diff = max_diff(reference, OnnxModel(path)(x))
    if diff["max_rel"] > 1e-4:
        raise RuntimeError(f"the fp32 ONNX export differs from the MindSpore forward (max_rel {diff['max_rel']:.3g});"
                           " the graph cannot be quantized faithfully")
    report = {"model": setup.model, "checkpoint": args.ckpt_path, "random_weights": False, "ema": args.ema,
              "input_shape": ["N"] + list(shape[1:]), "dynamic_batch": True,
              "output_shape": ["N", setup.num_classes], "num_classes": setup.num_classes,
              "class_names": list(setup.class_names) if setup.class_names else None,
              "preprocessing": setup.preprocessing_dict(), "preprocessing_notes": setup.messages(),
              "mindspore": ms.__version__, "bn_fused": True, "bn_folded": len(net.fused_pairs),
              "files": {"onnx": path}, "onnx_opset": onnx_opset(path), "parity": {"onnx_b2": diff}}
    return report


def _write_json(path: str, data: Dict[str, object]) -> None:
    with open(path, "w") as fh:
        json.dump(data, fh, indent=1)


def _table(rows: List[Dict[str, object]], batch: int) -> str:
    head = f"| model | top-1 | top-5 | size (MB) | batch-1 ms | batch-{batch} img/s |"
    lines = [head, "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['top1']:.2f} | {r['top5']:.2f} | {r['size_mb']:.2f} | "
                     f"{r['speed']['1']['ms']:.2f} | {r['speed'][str(batch)]['img_per_s']:.1f} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    for flag in ("calibration_samples", "holdout_samples", "batch_size", "repeats"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    try:
        import onnx  # noqa: F401
        import onnxruntime.quantization  # noqa: F401
    except ImportError as e:
        raise UsageError(f"quantize needs onnxruntime and onnx ({e}): pip install onnxruntime onnx") from e
    from ..runtime import prepare_environment

    device, note = prepare_environment(args.device)
    from ..runtime import setup_context

    setup_context(device, mode="graph")
    from ..inference import setup_from_checkpoint
    from ..training.config import Config

    _, setup = setup_from_checkpoint(args.ckpt_path, args.model)
    for line in setup.messages() + ([f"note: {note}"] if note else []):
        print(line)
    cfg = Config(data_dir=args.data_dir, train_split=args.train_split, val_split=args.val_split,
                 val_samples=args.val_samples, num_workers=args.num_workers, model=setup.model,
                 num_classes=setup.num_classes, in_channels=setup.in_channels)
    from ..data import check_dataset
    from ..training.plan import raise_problems

    data, problems = check_dataset(cfg, train=True, val=True)
    raise_problems(problems)

    os.makedirs(args.output_dir, exist_ok=True)
    stem = os.path.join(args.output_dir, f"{setup.model}_{setup.image_size}")
    outputs = [stem + s for s in ("_fp32.onnx", "_fp32.json", "_int8.onnx", "_int8.json", "_quantize.json")]
    existing = [p for p in outputs if os.path.exists(p)]
    if existing and not args.overwrite:
        raise UsageError(f"{', '.join(existing)} already exist(s); pass --overwrite true or another --output_dir")

    t0 = time.time()
    fp32_report = export_fp32(args, setup, stem)
    fp32_path = fp32_report["files"]["onnx"]
    _write_json(stem + "_fp32.json", fp32_report)
    print(f"wrote {fp32_path} (BN folded, symbolic batch; onnxruntime vs MindSpore max_rel "
          f"{fp32_report['parity']['onnx_b2']['max_rel']:.2e})")

    (calibration, _), holdout = draw_train_images(cfg, setup, (args.calibration_samples, args.holdout_samples),
                                                  args.seed)
    print(f"calibration: {len(calibration)} train images, held-out: {len(holdout[1])} other train images "
          f"(seed {args.seed}), {setup.image_size} px eval preprocessing; search {args.search}:")
    from ..deploy.quantize import search

    int8_path = stem + "_int8.onnx"
    quant = search(fp32_path, int8_path, calibration, holdout, args.search, args.reduce_range)
    print(f"chosen: {quant['chosen']['name']} ({quant['why']})")
    int8_report = dict(fp32_report, files={"onnx": int8_path}, quantization=quant)
    _write_json(stem + "_int8.json", int8_report)

    from ..deploy.onnx import evaluate_onnx, measure_speed

    n = min(data.val_images, args.val_samples) if args.val_samples else data.val_images
    files = {"fp32": fp32_path, "int8": int8_path}
    speed = measure_speed(files, (setup.in_channels, setup.image_size, setup.image_size), (1, args.batch_size),
                          args.repeats, threads=args.cpu_threads)
    rows = []
    for name, path in files.items():
        res = evaluate_onnx(path, cfg, setup, args.batch_size, expected=n, threads=args.cpu_threads)
        rows.append({"name": name, "file": path, "size_mb": os.path.getsize(path) / 1e6, "speed": speed[name],
                     **{k: res[k] for k in ("top1", "top5", "loss", "num_samples")}})
    fp32, int8 = rows
    drop = fp32["top1"] - int8["top1"]
    b = str(args.batch_size)
    summary = {
        "top1_drop": float(drop), "within_1_point": bool(drop <= 1.0),
        "speedup_batch1": fp32["speed"]["1"]["ms"] / int8["speed"]["1"]["ms"],
        f"speedup_batch{b}": int8["speed"][b]["img_per_s"] / fp32["speed"][b]["img_per_s"],
        "size_ratio": int8["size_mb"] / fp32["size_mb"],
    }
    import onnxruntime

    report = {"model": setup.model, "checkpoint": args.ckpt_path, "data_dir": args.data_dir,
              "val_split": args.val_split, "val_images": n, "image_size": setup.image_size,
              "batch_size": args.batch_size, "results": rows, "summary": summary, "quantization": quant,
              "onnxruntime": onnxruntime.__version__, "cpu_threads": args.cpu_threads,
              "machine": machine_description(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "seconds": time.time() - t0}
    _write_json(stem + "_quantize.json", report)
    print(f"{setup.model} at {setup.image_size} px, {n} val images ({args.val_split}), onnxruntime "
          f"{onnxruntime.__version__} CPU, {report['machine']}:")
    print(_table(rows, args.batch_size))
    print(f"INT8 top-1 {'-' if drop >= 0 else '+'}{abs(drop):.2f} points vs fp32 "
          f"({'within' if summary['within_1_point'] else 'NOT within'} 1.0); speed INT8/fp32: batch 1 "
          f"{summary['speedup_batch1']:.2f}x, batch {b} {summary[f'speedup_batch{b}']:.2f}x; size "
          f"{summary['size_ratio']:.2f}x")
    print(f"wrote {stem}_quantize.json")
    return 0


def cli() -> None:
    """Console entry point (`mindghost-quantize`): exits through `runtime.run_main`."""
    from ..runtime import run_main

    run_main(main, sys.argv[1:])


if __name__ == "__main__":
    cli()
