"""Helpers for the trainer tests: tiny ImageFolder trees, the tiny train.py arguments, entry points as modules,
checkpoint contents as arrays. The fixtures built on them are in conftest.py."""
import gzip
import importlib.util
import os
import shutil

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"

# a short train.py run on write_tiny_imagefolder's data (3 classes, 32 px, CPU, no bars or plots): tests add theirs
TINY_TRAIN_ARGS = ["--model", "ghostnet_050", "--num_classes", "3", "--image_size", "32", "--batch_size", "4",
                   "--device", "CPU", "--progress", "False", "--plot", "False", "--lr", "0.01", "--log_every", "1",
                   "--warmup_epochs", "0"]
# the same in PyNative mode (no graph compile), no validation, one loader worker: the failure battery's runs
TINY_PYNATIVE_ARGS = TINY_TRAIN_ARGS + ["--mode", "pynative", "--val_every", "0", "--num_workers", "1"]


def write_tiny_imagefolder(root: str, classes: int = 3, train_per_class: int = 8, val_per_class: int = 5,
                           size: int = 32, grey: bool = False) -> str:
    """Learnable synthetic classes. RGB: class c is brighter in channel c. grey ('L' PNGs): class c is noise
    around brightness 40 + 80 c."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        for c in range(classes):
            d = os.path.join(root, split, f"class_{c}")
            os.makedirs(d, exist_ok=True)
            for i in range(n):
                if grey:
                    img = np.clip(rng.normal(40 + 80 * c, 20, (size, size)), 0, 255).astype(np.uint8)
                    Image.fromarray(img, mode="L").save(os.path.join(d, f"{i}.png"))
                    continue
                img = rng.integers(0, 100, (size, size, 3), dtype=np.uint8)
                img[..., c % 3] += 120
                Image.fromarray(img).save(os.path.join(d, f"{i}.png"))
    return root


def load_entry_point(name: str):
    """train.py / validate.py as modules, to call their main() in process."""
    spec = importlib.util.spec_from_file_location(f"mindghost_{name}", os.path.join(ROOT, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_fashion_mnist_subset(root: str, train: int, val: int) -> str:
    """The first `train` / `val` images of Fashion-MNIST's train / test files as an ImageFolder tree."""
    from PIL import Image

    files = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", train),
             "val": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", val)}
    for split, (img_f, lbl_f, n) in files.items():
        with gzip.open(os.path.join(FASHION_MNIST, img_f)) as fh:
            images = np.frombuffer(fh.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:n]
        with gzip.open(os.path.join(FASHION_MNIST, lbl_f)) as fh:
            labels = np.frombuffer(fh.read(), np.uint8, offset=8)[:n]
        for c in range(10):
            os.makedirs(os.path.join(root, split, f"{c}"), exist_ok=True)
        for i, (img, label) in enumerate(zip(images, labels)):
            Image.fromarray(img, mode="L").save(os.path.join(root, split, f"{label}", f"{i}.png"))
    return root


def checkpoint_arrays(path: str) -> dict:
    """A checkpoint's tensors as numpy arrays, by parameter name (non-tensor entries left out)."""
    import mindspore as ms

    return {k: v.asnumpy() for k, v in ms.load_checkpoint(path).items() if hasattr(v, "asnumpy")}


def copy_tree(src: str, dst) -> str:
    """A copy of the tree `src` at `dst` (to break it without touching a shared fixture)."""
    shutil.copytree(src, dst)
    return str(dst)


def without(args: list, flag: str) -> list:
    """`args` without `flag` and its value."""
    i = args.index(flag)
    return args[:i] + args[i + 2:]


def jpeg_bytes(size: int = 64) -> bytes:
    """A valid size x size RGB JPEG file's bytes (noise)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()
