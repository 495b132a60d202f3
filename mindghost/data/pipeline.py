"""Train and eval loaders over an ImageFolder tree `<data_dir>/<split>/<class>/<image>`, built with MindCV.

The train pipeline is rebuilt every epoch with the dataset seed `seed + epoch`, so an epoch's order and
augmentation depend only on (seed, epoch): a resumed run sees exactly the data of an uninterrupted one.
Eval preprocessing comes from the model's default cfg unless the recipe overrides a field. Grey-scale models
(in_channels 1) get the same pipelines with a grey ending (see `channels.py`).
"""
import logging
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from ..errors import DataError
from .channels import channel_mean_std, channel_tail, grey_tail, in_channels_problem
from .checks import format_bad_files, scan_class_folder


@dataclass(frozen=True)
class EvalPreprocessing:
    image_size: int
    crop_pct: float
    interpolation: str
    mean: Tuple[float, ...]  # in [0, 1], one per input channel (3: RGB, 1: grey-scale)
    std: Tuple[float, ...]

    @property
    def resize_size(self) -> int:
        return int(self.image_size / self.crop_pct)  # MindCV floors the same way

    @property
    def in_channels(self) -> int:
        """Channels the images are decoded to: 3 (RGB) or 1 (grey-scale, L)."""
        return len(self.mean)

    def rgb_mean_std(self) -> Tuple[List[float], List[float]]:
        """mean/std in 0-255 units for MindCV's RGB transforms (a grey value repeated: the fill colour of its
        augmentations; the grey ending replaces its Normalize)."""
        repeat = 3 if self.in_channels == 1 else 1
        return [m * 255 for m in self.mean] * repeat, [s * 255 for s in self.std] * repeat


def inspect_split(data_dir: str, split: str) -> Tuple[List[str], int]:
    """Class folder names (sorted, = label order) and image count of one split; clear errors when unusable.

    Every file is checked cheaply (extension, size, header, end marker: see `checks.py`) because MindSpore's
    pipeline crashes or hangs on undecodable files instead of naming them."""
    if not data_dir:
        raise DataError("No dataset given: pass --data_dir /path/to/dataset (holding train/ and val/ class folders)")
    root = os.path.join(data_dir, split)
    if not os.path.isdir(root):
        found = sorted(d for d in os.listdir(data_dir) if os.path.isdir(os.path.join(data_dir, d))) \
            if os.path.isdir(data_dir) else None
        where = f"'{data_dir}' holds {found}" if found is not None else f"'{data_dir}' does not exist"
        raise DataError(f"Split folder '{root}' not found ({where}). Expected <data_dir>/{split}/<class>/<image>; "
                        f"set --train_split/--val_split if your folders are named differently.")
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not classes:
        raise DataError(f"'{root}' has no class folders: expected {root}/<class_name>/<image files>")
    count = 0
    empty = []
    bad = []
    for c in classes:
        n, bad_here = scan_class_folder(os.path.join(root, c))
        count += n
        bad += bad_here
        if n == 0:
            empty.append(c)
    if bad:
        raise DataError(format_bad_files(root, bad))
    if empty:
        raise DataError(f"'{root}': {len(empty)} class folder(s) hold no images ({', '.join(empty[:5])}); "
                        "remove them or add images, otherwise labels shift between splits")
    return classes, count


@dataclass(frozen=True)
class DatasetInfo:
    """What the dataset check found: class folder names (= label order) and image counts (0 = split not read)."""

    classes: Tuple[str, ...]
    train_images: int
    val_images: int


def check_dataset(cfg, train: bool, val: bool) -> Tuple[DatasetInfo, List[DataError]]:
    """The one dataset check of train.py and validate.py: each split that is used is scanned (`inspect_split`),
    its class folders must number `cfg.num_classes`, and train and val must hold the same classes.

    Returns what was found and every problem (not only the first), so the caller can report them together."""
    problems: List[DataError] = []
    found: Dict[str, Tuple[List[str], int]] = {}
    for split, used in ((cfg.train_split, train), (cfg.val_split, val)):
        if not used or split in found:
            continue
        try:
            found[split] = inspect_split(cfg.data_dir, split)
        except DataError as e:
            problems.append(e)
            if not cfg.data_dir:
                break  # one "no dataset given" is enough
    for split, (classes, _) in found.items():
        if len(classes) != cfg.num_classes:
            problems.append(DataError(
                f"'{cfg.data_dir}/{split}' has {len(classes)} class folders but num_classes is {cfg.num_classes}; "
                f"pass --num_classes {len(classes)}"))
            break  # the same advice for the other split would repeat it
    if train and val and cfg.train_split in found and cfg.val_split in found:
        a, b = found[cfg.train_split][0], found[cfg.val_split][0]
        if a != b:
            problems.append(DataError(f"train and val class folders differ: {sorted(set(a) ^ set(b))[:5]}; "
                                      "make the class folders of both splits identical"))
    any_split = next(iter(found.values()), ([], 0))
    info = DatasetInfo(classes=tuple(any_split[0]), train_images=found.get(cfg.train_split, ([], 0))[1] if train else 0,
                       val_images=found.get(cfg.val_split, ([], 0))[1] if val else 0)
    return info, problems


def eval_preprocessing(cfg, default_cfg: Dict) -> EvalPreprocessing:
    """The recipe's value where set, else the model's default cfg; one mean/std value per `cfg.in_channels`
    (grey-scale without a given mean/std: the average of the default RGB values, logged).

    Raises DataError naming every key that does not fit `in_channels` (an in_channels other than 1 or 3, a
    3-value mean or std with in_channels 1)."""
    problem = in_channels_problem(cfg.in_channels)
    if problem:
        raise DataError(problem)
    mean, std, notes, problems = channel_mean_std(cfg.mean, cfg.std, default_cfg["mean"], default_cfg["std"],
                                                  cfg.in_channels)
    if problems:
        raise DataError("; ".join(problems))
    for note in notes:
        logging.getLogger("mindghost").info(note)
    size = cfg.eval_image_size or cfg.image_size or int(default_cfg["input_size"][-1])
    return EvalPreprocessing(
        image_size=size,
        crop_pct=cfg.crop_pct if cfg.crop_pct is not None else float(default_cfg["crop_pct"]),
        interpolation=cfg.interpolation or default_cfg["interpolation"],
        mean=mean,
        std=std,
    )


def data_workers(cfg) -> Tuple[int, str]:
    """(data workers per process, a note when the configured number was lowered).

    More workers than the cores this process may use only adds switching, and MindSpore refuses them with a raw
    "num_parallel_workers exceeds the boundary" error, so `num_workers` is clamped to the usable cores."""
    from ..runtime import local_world_size, num_cores

    if cfg.deterministic:
        return 1, ""  # random augmentation streams are per worker: one worker keeps the order reproducible
    cores = num_cores()
    if cfg.num_workers > cores:
        return cores, (f"num_workers {cfg.num_workers} is more than the {cores} cores this process may use: using "
                       f"{cores} data workers")
    return cfg.num_workers or max(1, cores // local_world_size()), ""


def _workers(cfg) -> int:
    return data_workers(cfg)[0]


def _train_transforms(cfg, pre: EvalPreprocessing) -> list:
    from mindcv.data import create_transforms
    from mindspore.dataset import vision

    mean255, std255 = pre.rgb_mean_std()  # MindCV works on uint8 images
    interpolation = cfg.interpolation or pre.interpolation
    if cfg.train_crop == "random_resized":
        ops = create_transforms(
            "imagenet", image_resize=cfg.image_size, is_training=True, auto_augment=cfg.auto_augment,
            scale=tuple(cfg.scale), ratio=tuple(cfg.ratio), hflip=cfg.hflip, vflip=cfg.vflip,
            color_jitter=cfg.color_jitter, interpolation=interpolation, mean=mean255, std=std255,
            re_prob=cfg.re_prob,
        )
        return channel_tail(ops, pre.in_channels, pre.mean, pre.std)
    # pad_crop: small-image (CIFAR-style) augmentation; keeps the whole object in view
    inter = getattr(vision.Inter, interpolation.upper())
    ops = [vision.Decode(), vision.Resize((cfg.image_size, cfg.image_size), interpolation=inter),
           vision.RandomCrop(cfg.image_size, padding=max(1, cfg.image_size // 8))]
    if cfg.hflip > 0:
        ops.append(vision.RandomHorizontalFlip(prob=cfg.hflip))
    if cfg.color_jitter:
        ops.append(vision.RandomColorAdjust(*(float(cfg.color_jitter),) * 3))
    if pre.in_channels == 1:
        ops += grey_tail(pre.mean, pre.std)
    else:
        ops += [vision.Normalize(mean=mean255, std=std255), vision.HWC2CHW()]
    if cfg.re_prob > 0:
        ops.append(vision.RandomErasing(prob=cfg.re_prob))
    return ops


def build_train_loader(cfg, pre: EvalPreprocessing, epoch: int, rank: int = 0, group_size: int = 1):
    """The batched train dataset of one epoch (seeded by seed + epoch), sharded by rank."""
    import mindspore.dataset as ds
    from mindcv.data import create_dataset, create_loader

    ds.config.set_seed(cfg.seed + epoch)
    workers = _workers(cfg)
    dataset = create_dataset(
        "imagenet", root=cfg.data_dir, split=cfg.train_split, shuffle=cfg.shuffle,
        num_samples=cfg.train_samples or None,
        num_shards=group_size if group_size > 1 else None, shard_id=rank if group_size > 1 else None,
        num_parallel_workers=workers, num_aug_repeats=cfg.aug_repeats,
    )
    mixing = cfg.mixup > 0 or cfg.cutmix > 0
    return create_loader(
        dataset, batch_size=cfg.batch_size, drop_remainder=cfg.drop_remainder, is_training=True,
        # MindCV mixes only when cutmix_prob > 0: it is the overall probability that a batch is mixed
        mixup=cfg.mixup, cutmix=cfg.cutmix, cutmix_prob=cfg.mixup_prob if mixing else 0.0,
        num_classes=cfg.num_classes, transform=_train_transforms(cfg, pre), num_parallel_workers=workers,
    )


def build_eval_loader(cfg, pre: EvalPreprocessing, batch_size: Optional[int] = None, rank: int = 0,
                      group_size: int = 1):
    """The whole val split in file order, every sample once; the last batch may be partial.

    Sharded (group_size > 1): rank r gets samples r, r + group_size, ... and shards may differ in size by
    one. (MindSpore's DistributedSampler instead pads short shards by repeating samples, which would count
    them twice.)"""
    import mindspore.dataset as ds
    from mindcv.data import create_dataset, create_loader

    workers = _workers(cfg)
    dataset = create_dataset("imagenet", root=cfg.data_dir, split=cfg.val_split, shuffle=False,
                             num_samples=cfg.val_samples or None, num_parallel_workers=workers)
    if group_size > 1:
        indices = list(range(rank, dataset.get_dataset_size(), group_size))
        dataset = ds.ImageFolderDataset(os.path.join(cfg.data_dir, cfg.val_split), sampler=ds.SubsetSampler(indices),
                                        num_parallel_workers=workers)
    return create_loader(dataset, batch_size=batch_size or cfg.resolved_eval_batch_size(), drop_remainder=False,
                         is_training=False, transform=eval_ops(pre), num_parallel_workers=workers)


def eval_ops(pre: EvalPreprocessing) -> list:
    """MindSpore ops from encoded image bytes (uint8 array) to a normalized (in_channels, H, W) float32 array:
    decode, resize the short side to `pre.resize_size`, center crop `pre.image_size`, normalize. The one eval
    transform of validation, training's evaluation and prediction."""
    from mindcv.data import create_transforms

    mean255, std255 = pre.rgb_mean_std()
    ops = create_transforms("imagenet", image_resize=pre.image_size, is_training=False, crop_pct=pre.crop_pct,
                            interpolation=pre.interpolation, mean=mean255, std=std255)
    return channel_tail(ops, pre.in_channels, pre.mean, pre.std)
