#!/usr/bin/env python
"""By-hand check that `python -m mindghost.convert --to timm` files give timm the logits mindghost computes.

Two steps, two environments (torch is never installed next to MindSpore):

    python scripts/timm_parity.py make --output_dir /tmp/timm_parity          # mindghost venv: weights, files, logits
    /path/to/torch-venv/bin/python scripts/timm_parity.py check --output_dir /tmp/timm_parity   # torch + timm venv

`make` builds each model with seeded random weights (BatchNorm statistics randomised too, so that folding and
naming errors show), writes it as a mindghost checkpoint, converts it with the production command, and stores
the MindSpore logits (PyNative, fp32) of a seeded input. `check` loads each `.safetensors` into
`timm.create_model(name, num_classes=N)` with `load_state_dict(strict=True)` and prints the largest logit
difference; it exits 1 above 1e-5. docs/parity.md records the result.
"""
import argparse
import json
import os
import sys
from typing import Sequence

import numpy as np

# (mindghost model, timm model, fused V3 form, image size)
CASES = [("ghostnet_050", "ghostnet_050", False, 64), ("ghostnet_100", "ghostnet_100", False, 64),
         ("ghostnetv2_100", "ghostnetv2_100", False, 72), ("ghostnetv3_050", "ghostnetv3_050", False, 72),
         ("ghostnetv3_050", "ghostnetv3_050", True, 72)]
NUM_CLASSES = 10


def make(out: str, only: Sequence[str] = ()) -> None:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import mindghost  # noqa: I001  (before mindspore: it sets the CPU's oneDNN ISA)
    import mindspore as ms
    from mindghost.convert.convert import main as convert_main

    ms.set_context(mode=ms.PYNATIVE_MODE)
    os.makedirs(out, exist_ok=True)
    manifest = []
    for name, timm_name, fused, size in CASES:
        tag = name + ("_fused" if fused else "")
        manifest.append({"tag": tag, "timm": timm_name, "fused": fused})
        if only and tag not in only:
            continue
        ms.set_seed(0)
        net = mindghost.create_model(name, num_classes=NUM_CLASSES)
        rng = np.random.default_rng(1)
        for p in net.get_parameters():  # BN statistics and affine away from their init: a wrong name shows
            if p.name.endswith(("moving_mean", "beta")):
                p.set_data(ms.Tensor(rng.normal(0, 0.1, p.shape).astype(np.float32)))
            elif p.name.endswith(("moving_variance", "gamma")):
                # halved inside GhostNetV3's summed branches (as tests/parity_recipe.py): else logits reach 1e10
                scale = 0.5 if "_rpr_" in p.name and p.name.endswith("gamma") else 1.0
                p.set_data(ms.Tensor(scale * rng.uniform(0.5, 1.5, p.shape).astype(np.float32)))
        if fused:
            net.reparameterize()
        net.set_train(False)
        ckpt = os.path.join(out, f"{tag}.ckpt")
        ms.save_checkpoint(net, ckpt)
        st = os.path.join(out, f"{tag}.safetensors")
        assert convert_main(["--to", "timm", "--ckpt_path", ckpt, "--model", name, "--num_classes",
                             str(NUM_CLASSES), "--out", st, "--overwrite"]) == 0
        x = np.random.default_rng(7).standard_normal((2, 3, size, size)).astype(np.float32)
        np.savez(os.path.join(out, f"{tag}.npz"), x=x, logits=net(ms.Tensor(x)).asnumpy())
        print(f"made {tag}")
    with open(os.path.join(out, "manifest.json"), "w") as fh:
        json.dump(manifest, fh, indent=1)


def check(out: str) -> int:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import safetensors.torch
    import torch

    from benchmarks.torch_compat import import_timm  # stubs torchvision where its wheel is broken

    timm = import_timm()

    with open(os.path.join(out, "manifest.json")) as fh:
        manifest = json.load(fh)
    worst = 0.0
    for case in manifest:
        model = timm.create_model(case["timm"], num_classes=NUM_CLASSES)
        if case["fused"]:
            from timm.utils.model import reparameterize_model

            model = reparameterize_model(model)
        model.load_state_dict(safetensors.torch.load_file(os.path.join(out, case["tag"] + ".safetensors")),
                              strict=True)
        model.eval()
        data = np.load(os.path.join(out, case["tag"] + ".npz"))
        with torch.no_grad():
            logits = model(torch.from_numpy(data["x"])).numpy()
        diff = float(np.abs(logits - data["logits"]).max())
        worst = max(worst, diff)
        print(f"{case['tag']:<22} timm {case['timm']:<16} max |logit diff| {diff:.2e}  "
              f"(max |logit| {np.abs(data['logits']).max():.2f})  torch {torch.__version__}, timm {timm.__version__}")
    return 0 if worst <= 1e-5 else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("step", choices=("make", "check"))
    p.add_argument("--output_dir", default="/tmp/timm_parity", help="folder of the .safetensors files and inputs")
    p.add_argument("only", nargs="*", help="make: only these cases (e.g. ghostnetv3_050_fused)")
    return p


if __name__ == "__main__":
    args = build_parser().parse_intermixed_args()
    if args.step == "make":
        make(args.output_dir, args.only)
    else:
        sys.exit(check(args.output_dir))
