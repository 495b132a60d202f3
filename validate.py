#!/usr/bin/env python
"""Evaluate a checkpoint (mindghost, MindCV, or converted official weights) on an ImageFolder val split.
An exported `.onnx` file (fp32, or INT8 from mindghost.tools.quantize) is evaluated the same way in onnxruntime,
with the preprocessing and classes of the `.json` written beside it (mindghost.deploy.onnx).

    python validate.py -c configs/ghostnet/ghostnet_100_ascend.yaml --data_dir /path/to/imagenet \
        --ckpt_path /path/to/ckpt [--ema]

Prints top-1, top-5, loss and img/s, and writes them as JSON (`<output_dir>/validate.json`, or next to the
checkpoint as `<checkpoint>.eval.json`). Every sample is counted once; the batch size is never changed.
The model is built by `mindghost.inference.build_inference_model`, the same as predict and export build it.
"""
import dataclasses
import json
import os
import sys
from typing import Any, Dict, List, Optional

from mindghost import runtime
from mindghost.training.config import ConfigError, parse_args_with_recipe

# the schema fields validation uses: `validate.py --help` lists these; a recipe's training keys are ignored
VALIDATE_FIELDS = ("device", "mode", "seed", "deterministic", "num_workers", "cpu_threads", "dataset", "data_dir",
                   "val_split", "batch_size", "eval_batch_size", "val_samples", "image_size", "eval_image_size",
                   "interpolation", "crop_pct", "mean", "std", "model", "model_kwargs", "num_classes", "in_channels",
                   "pretrained", "pretrained_dir", "ckpt_path", "ema", "fuse_bn", "output_dir", "progress")


def main(argv: Optional[List[str]] = None) -> dict:
    cfg, given, cli_keys = parse_args(argv)
    device, notes = setup_runtime(cfg, ignored=[k for k in cli_keys if k not in VALIDATE_FIELDS])
    if cfg.ckpt_path.endswith(".onnx"):  # an exported or INT8 graph, run in onnxruntime with its export JSON
        from mindghost.deploy.onnx import validate_onnx
        from mindghost.training.logs import LOG

        result = validate_onnx(cfg, given, LOG)
        write_result(cfg, result)
        return result
    source = resolve_weights(cfg, given)
    cfg = dataclasses.replace(cfg, model=source.setup.model, num_classes=source.setup.num_classes,
                              in_channels=source.setup.in_channels)
    loader, num_images = build_data(cfg, source.setup)
    built = build_model(cfg, source, device)
    result = run_evaluation(cfg, built, loader, num_images)
    write_result(cfg, result)
    return result


def parse_args(argv: Optional[List[str]]):
    """(Config, {key: value the recipe or command line set}, the keys set on the command line); refuses what
    validation cannot do."""
    cfg, cli, recipe = parse_args_with_recipe(argv, description="Evaluate a checkpoint on the validation split.",
                                              fields=VALIDATE_FIELDS)
    if not cfg.ckpt_path and not cfg.pretrained:
        raise ConfigError("validate.py needs the weights to evaluate: --ckpt_path /path/to/checkpoint, or "
                          "--pretrained True for the model's published weights (it never evaluates random weights)")
    return cfg, {**recipe, **cli}, sorted(cli)


def setup_runtime(cfg, ignored: Optional[List[str]] = None):
    """The device (resolved, environment prepared before MindSpore loads), the MindSpore context and logging."""
    device, why = runtime.choose_device(cfg.device)
    device, env_note = runtime.prepare_environment(device)
    runtime.setup_context(device, cfg.mode, cfg.deterministic, cfg.seed, cfg.cpu_threads)
    from mindghost.training.logs import LOG, setup_logging

    setup_logging()
    for note in (why, env_note):
        if note:
            LOG.info(note)
    if cfg.distribute:
        LOG.info("validate.py runs in one process; 'distribute' is ignored")
    if ignored:  # training options on the command line (a recipe's training keys are expected and not listed)
        LOG.info("not used by validation (training options): " + ", ".join("--" + k for k in ignored))
    return device, [why, env_note]


def resolve_weights(cfg, given: Dict[str, Any]):
    """The weights and their eval setup: what the recipe or command line set (`given`), else what the checkpoint
    records, else the model's default cfg; disagreements with the checkpoint are warned about (structure: refused).
    See `mindghost.inference.resolve_inference_setup`."""
    from mindghost.inference import resolve_source
    from mindghost.training.logs import LOG

    keys = ("crop_pct", "interpolation", "mean", "std", "num_classes", "in_channels", "model_kwargs")
    explicit = {"image_size": given.get("eval_image_size") or given.get("image_size"),
                **{k: given.get(k) for k in keys}}
    model = given.get("model") or (cfg.model if cfg.pretrained else None)
    source = resolve_source(cfg.ckpt_path, model, explicit, pretrained=cfg.pretrained,
                            pretrained_dir=cfg.pretrained_dir)
    for line in source.setup.messages():
        (LOG.warning if line.startswith("warning: ") else LOG.info)(line)
    return source


def build_data(cfg, setup):
    """The eval loader of the val split with the setup's preprocessing, after checking the split (its class
    folders must number the model's classes); and the number of images evaluated."""
    from mindghost.data import build_eval_loader, check_dataset
    from mindghost.training.logs import LOG
    from mindghost.training.plan import raise_problems

    # class names compared with the checkpoint's, a subset evaluated by name
    data, problems = check_dataset(cfg, train=False, val=True, class_names=setup.class_names,
                                   names_source=f"'{cfg.ckpt_path}'" if cfg.ckpt_path else "the published weights")
    raise_problems(problems)
    for note in data.notes():
        LOG.info(note)
    num_images = min(data.val_images, cfg.val_samples) if cfg.val_samples else data.val_images
    return build_eval_loader(cfg, setup.preprocessing(), cfg.resolved_eval_batch_size(),
                             class_indexing=data.val_class_indexing,
                             decode_guard=data.decode_guard(cfg.val_split, training=False)), num_images


def build_model(cfg, source, device: str):
    from mindghost.inference import build_inference_model
    from mindghost.training.logs import LOG

    built = build_inference_model(source=source, ema=cfg.ema, fuse_bn=cfg.fuse_bn, device=device)
    for line in built.notes:
        LOG.info(line)
    return built


def run_evaluation(cfg, built, loader, num_images: int) -> dict:
    from mindghost.training.evaluate import evaluate
    from mindghost.training.logs import LOG, show_progress_bars
    from mindghost.training.train_step import EvalNet

    pre, batch = built.setup.preprocessing(), cfg.resolved_eval_batch_size()
    LOG.info(f"validating {cfg.model} ({'EMA' if cfg.ema else 'raw'} weights of {built.ckpt_path}) on {num_images} "
             f"images, batch {batch}, {built.device}; {pre}")
    res = evaluate(EvalNet(built.model), loader, batch, progress=show_progress_bars(cfg.progress, True),
                   expected=num_images)
    LOG.info(f"top-1 {res['top1']:.2f}  top-5 {res['top5']:.2f}  loss {res['loss']:.4f}  "
             f"{res['img_per_s']:.1f} img/s  ({res['num_samples']} images, {res['seconds']:.0f} s)")
    result = {"model": cfg.model, "checkpoint": os.path.abspath(built.ckpt_path), "ema": cfg.ema,
              "data_dir": cfg.data_dir, "split": cfg.val_split, "batch_size": batch, "device": built.device,
              "image_size": pre.image_size, "crop_pct": pre.crop_pct, "interpolation": pre.interpolation,
              "bn_folded": built.bn_folded, "reparameterized": built.reparameterized, **res}
    if built.meta:
        result["trained_epochs"] = built.meta.get("epoch")
    return result


def write_result(cfg, result: dict) -> None:
    """`<output_dir>/validate.json`, else `<checkpoint>.eval.json`; a write failure is a warning, not an error."""
    from mindghost.training.logs import LOG

    out = (os.path.join(cfg.output_dir, "validate.json") if cfg.output_dir
           else result["checkpoint"] + ".eval.json")
    try:
        if cfg.output_dir:
            os.makedirs(cfg.output_dir, exist_ok=True)
        with open(out, "w") as fh:
            json.dump(result, fh, indent=2)
        LOG.info(f"results written to {out}")
    except OSError as e:
        LOG.warning(f"could not write {out} ({e}); pass --output_dir to choose where")


if __name__ == "__main__":
    runtime.run_main(main, sys.argv[1:])
