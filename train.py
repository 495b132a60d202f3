#!/usr/bin/env python
"""Train a Ghost-family model on an ImageFolder dataset.

    python train.py -c configs/demo/ghostnet_050_fashion_mnist_cpu.yaml --data_dir data/fashion_mnist
    msrun --worker_num=8 --local_worker_num=8 --join=True --bind_core=True train.py \
        --config configs/ghostnet/ghostnet_050_ascend.yaml --data_dir /path/to/imagenet
"""
import sys
from typing import List, Optional

from mindghost import runtime
from mindghost.training.config import parse_args


def main(argv: Optional[List[str]] = None) -> dict:
    cfg, _ = parse_args(argv, description="Train a Ghost-family model (recipe YAML + command-line overrides).",
                        defer_checks=True)  # value checks: with the data's, in one error (B.plan_run)
    device, why = runtime.choose_device(cfg.device)
    device, env_note = runtime.prepare_environment(device)  # before MindSpore is imported

    from mindghost.training import builders as B

    replica = B.setup_runtime(cfg, device, [why, env_note])
    plan = B.plan_run(cfg, device, replica)  # every check, before anything is written
    B.create_run(plan)
    model = B.build_model(cfg, replica)
    schedule = B.build_schedule(plan)
    train_step = B.build_train_step(plan, model, schedule)
    state = B.restore_state(plan, train_step)
    state = B.build_loop(plan, model, train_step, schedule).fit(state)
    return B.finish(plan, model, state)


if __name__ == "__main__":
    runtime.run_main(main, sys.argv[1:])
