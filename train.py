#!/usr/bin/env python
"""Train a Ghost-family model on an ImageFolder dataset.

    python train.py -c configs/demo/ghostnet_050_fashion_mnist_cpu.yaml --data_dir data/fashion_mnist
    msrun --bind_core=True --worker_num 8 python train.py --config configs/ghostnet/ghostnet_050_ascend.yaml \
        --data_dir /path/to/imagenet
"""
import sys
from typing import List, Optional

from mindghost import runtime
from mindghost.data.pipeline import DataError
from mindghost.training.config import parse_args


def main(argv: Optional[List[str]] = None) -> dict:
    cfg, _ = parse_args(argv, description="Train a Ghost-family model (recipe YAML + command-line overrides).")
    device, env_note = runtime.prepare_environment(cfg.device)  # before MindSpore is imported

    from mindghost.data import build_eval_loader, build_train_loader, eval_preprocessing, inspect_split
    from mindghost.training import distributed as D
    from mindghost.training import trainer as T
    from mindghost.training.callbacks import CallbackList, Checkpointer, Evaluator, MetricsWriter, ProgressLogger
    from mindghost.training.checkpoint import CheckpointManager
    from mindghost.training.optim import build_lr_schedule, build_optimizer, linear_lr_scale
    from mindghost.training.train_step import EvalNet

    rank, size = T.setup_runtime(cfg, env_note, device)
    run = T.prepare_run_dir(cfg, device, rank, size, env_note)
    classes, _ = inspect_split(cfg.data_dir, cfg.train_split)
    if len(classes) != cfg.num_classes:
        raise DataError(f"'{cfg.data_dir}/{cfg.train_split}' has {len(classes)} class folders but num_classes is "
                         f"{cfg.num_classes}; pass --num_classes {len(classes)}")
    val_classes, val_count = inspect_split(cfg.data_dir, cfg.val_split) if cfg.val_every else (classes, 0)
    if val_classes != classes:
        raise DataError(f"train and val class folders differ: {sorted(set(classes) ^ set(val_classes))[:5]}")
    model = T.build_model(cfg)
    pre = eval_preprocessing(cfg, model.default_cfg)

    def make_train_loader(epoch: int):
        return build_train_loader(cfg, pre, epoch, rank, size)

    steps_per_epoch = make_train_loader(0).get_dataset_size()
    if steps_per_epoch == 0:
        raise DataError(f"not one full batch of {cfg.batch_size} per device in the train split; lower batch_size")
    updates_per_epoch = -(-steps_per_epoch // cfg.accum_steps)
    global_batch = cfg.batch_size * size * cfg.accum_steps
    lr_scale = linear_lr_scale(cfg, global_batch)
    if cfg.lr_base_batch:
        T.LOG.info(f"linear lr scaling: lr {cfg.lr:g} x {global_batch}/{cfg.lr_base_batch} = {cfg.lr * lr_scale:g}")
    optimizer = build_optimizer(cfg, model, build_lr_schedule(cfg, updates_per_epoch, lr_scale))
    train_step = T.build_train_step(cfg, model, T.build_loss(cfg), optimizer, device)
    state = T.restore(train_step, run)
    best_key = "val_ema_top1" if cfg.resolved_best_on() == "ema" else "val_top1"
    manager = CheckpointManager(run.ckpt_dir, cfg.keep_checkpoint_max) if rank == 0 else None  # rank 0 writes
    checkpointer = Checkpointer(manager, train_step, cfg.save_every, best_key, T.make_meta(cfg, run))
    n_val = min(val_count, cfg.val_samples) if cfg.val_samples else val_count
    sharded = {} if size == 1 else {
        "reduce": D.allreduce_sum,
        "sync": lambda: D.sync_from_rank0([p for p in model.get_parameters() if not p.requires_grad], rank)}
    evaluator = Evaluator(EvalNet(model), lambda: build_eval_loader(cfg, pre, rank=rank, group_size=size),
                          cfg.resolved_eval_batch_size(), cfg.val_every, train_step, cfg.progress, n_val,
                          (cfg.in_channels, pre.image_size, pre.image_size), **sharded)
    callbacks = CallbackList([evaluator, checkpointer, ProgressLogger(cfg.log_every, cfg.batch_size * size,
                                                                      cfg.progress),
                              MetricsWriter(run.directory, cfg.plot)])
    T.LOG.info(f"{steps_per_epoch} steps/epoch x {cfg.epochs} epochs, global batch {global_batch} "
               f"({cfg.batch_size} per device x {size} x {device}"
               + (f" x {cfg.accum_steps} accumulation" if cfg.accum_steps > 1 else "") + f"), eval {pre}")
    state = T.fit(cfg, run, train_step, make_train_loader, steps_per_epoch, callbacks, checkpointer, state)
    if size > 1:  # every replica must hold rank 0's weights (what was saved)
        state["replica_weight_diff"] = D.replica_divergence(model.trainable_params(), rank)
        T.LOG.info(f"replicas: sum over ranks of max |w - w_rank0| = {state['replica_weight_diff']:g}")
    summary = T.write_summary(cfg, run, state)
    if state["best"]:
        T.LOG.info(f"best {state['best']['key']} {state['best']['value']:.2f} at epoch {state['best']['epoch']}: "
                   f"{summary['best_checkpoint']}")
    return summary


if __name__ == "__main__":
    runtime.run_main(main, sys.argv[1:])
