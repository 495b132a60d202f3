#!/usr/bin/env python
"""Evaluate a checkpoint (mindghost, MindCV, or converted official weights) on an ImageFolder val split.

    python validate.py -c configs/ghostnet/ghostnet_100_ascend.yaml --data_dir /path/to/imagenet \
        --ckpt_path /path/to/ckpt [--ema True]

Prints top-1, top-5, loss and img/s, and writes them as JSON (`<output_dir>/validate.json`, or next to the
checkpoint as `<checkpoint>.eval.json`). Every sample is counted once; the batch size is never changed.
"""
import dataclasses
import json
import os
import sys
from typing import List, Optional

from mindghost import runtime
from mindghost.training.config import ConfigError, parse_args_with_recipe


def main(argv: Optional[List[str]] = None) -> dict:
    cfg, cli, recipe = parse_args_with_recipe(argv, description="Evaluate a checkpoint on the validation split.")
    if not cfg.ckpt_path and not cfg.pretrained:
        raise ConfigError("validate.py needs the weights to evaluate: --ckpt_path /path/to/checkpoint, or "
                          "--pretrained True for the model's published weights (it never evaluates random weights)")
    if cfg.new_classifier:
        raise ConfigError("validate.py loads weights strictly: new_classifier is for fine-tuning with train.py")
    device, why = runtime.choose_device(cfg.device)
    device, env_note = runtime.prepare_environment(device)

    from mindghost.cpu import accelerate_on_cpu
    from mindghost.data import build_eval_loader, check_dataset
    from mindghost.models import create_model, load_checkpoint, reparameterize_model
    from mindghost.training.evaluate import evaluate
    from mindghost.training.logs import LOG, setup_logging, show_progress_bars
    from mindghost.training.plan import raise_problems
    from mindghost.training.train_step import EvalNet

    runtime.setup_context(device, cfg.mode, cfg.deterministic, cfg.seed, cfg.cpu_threads)
    setup_logging()
    for note in (why, env_note):
        if note:
            LOG.info(note)
    if cfg.distribute:
        LOG.info("validate.py runs in one process; 'distribute' is ignored")
    if cfg.pretrained:  # the published file, fetched (or found in pretrained_dir / the cache) like train.py does
        from mindghost.hub import fetch_pretrained

        cfg = dataclasses.replace(cfg, ckpt_path=fetch_pretrained(cfg.model, cfg.pretrained_dir or None)[0])
    setup = checkpoint_setup(cfg.ckpt_path, {**recipe, **cli})
    for line in setup.messages():
        (LOG.warning if line.startswith("warning: ") else LOG.info)(line)
    cfg = dataclasses.replace(cfg, model=setup.model, num_classes=setup.num_classes, in_channels=setup.in_channels)
    data, problems = check_dataset(cfg, train=False, val=True)
    raise_problems(problems)
    model = create_model(cfg.model, num_classes=cfg.num_classes, in_channels=cfg.in_channels)
    meta = load_checkpoint(model, cfg.ckpt_path, ema=cfg.ema)
    # a training checkpoint of GhostNetV3 holds the train form: evaluate the fused inference form (exact up to
    # rounding, fewer convs); a no-op for the other families and for fused weights
    model = reparameterize_model(model)
    if cfg.fuse_bn == "on" or (cfg.fuse_bn == "auto" and device == "CPU"):
        from mindghost.models import fuse_bn

        model = fuse_bn(model, input_shape=(1, cfg.in_channels, 64, 64), inplace=True)
        LOG.info(f"folded {len(model.fused_pairs)} BatchNorm layers into their convs (--fuse_bn off to keep them)")
    model = accelerate_on_cpu(model, device)  # after folding: the folded depthwise convs keep the kernel
    pre = setup.preprocessing()
    batch = cfg.resolved_eval_batch_size()
    n = min(data.val_images, cfg.val_samples) if cfg.val_samples else data.val_images
    LOG.info(f"validating {cfg.model} ({'EMA' if cfg.ema else 'raw'} weights of {cfg.ckpt_path}) on {n} images, "
             f"batch {batch}, {device}; {pre}")
    res = evaluate(EvalNet(model), build_eval_loader(cfg, pre, batch), batch,
                   progress=show_progress_bars(cfg.progress, True), expected=n)
    result = {"model": cfg.model, "checkpoint": os.path.abspath(cfg.ckpt_path), "ema": cfg.ema,
              "data_dir": cfg.data_dir, "split": cfg.val_split, "batch_size": batch, "device": device,
              "image_size": pre.image_size, "crop_pct": pre.crop_pct, "interpolation": pre.interpolation,
              "bn_folded": len(getattr(model, "fused_pairs", ())),
              "reparameterized": bool(getattr(model, "reparameterized", False)), **res}
    if meta:
        result["trained_epochs"] = meta.get("epoch")
    LOG.info(f"top-1 {res['top1']:.2f}  top-5 {res['top5']:.2f}  loss {res['loss']:.4f}  "
             f"{res['img_per_s']:.1f} img/s  ({res['num_samples']} images, {res['seconds']:.0f} s)")
    out = os.path.join(cfg.output_dir, "validate.json") if cfg.output_dir else cfg.ckpt_path + ".eval.json"
    try:
        if cfg.output_dir:
            os.makedirs(cfg.output_dir, exist_ok=True)
        with open(out, "w") as fh:
            json.dump(result, fh, indent=2)
        LOG.info(f"results written to {out}")
    except OSError as e:
        LOG.warning(f"could not write {out} ({e}); pass --output_dir to choose where")
    return result


def checkpoint_setup(ckpt_path: str, given: dict):
    """The model, class count and eval preprocessing: what the recipe or command line set (`given`), else what
    the checkpoint records, else the model's default cfg; disagreements with the checkpoint are warned about
    (structure: refused). See `mindghost.inference.resolve_inference_setup`."""
    from mindghost.inference import setup_from_checkpoint

    keys = ("crop_pct", "interpolation", "mean", "std", "num_classes", "in_channels")
    explicit = {"image_size": given.get("eval_image_size") or given.get("image_size"),
                **{k: given.get(k) for k in keys}}
    return setup_from_checkpoint(ckpt_path, model=given.get("model"), explicit=explicit)[1]


if __name__ == "__main__":
    runtime.run_main(main, sys.argv[1:])
