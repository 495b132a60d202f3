"""Train and eval loaders over an ImageFolder tree `<data_dir>/<split>/<class>/<image>`, built with MindCV.

The train pipeline is rebuilt every epoch with the dataset seed `seed + epoch`, so an epoch's order and
augmentation depend only on (seed, epoch): a resumed run sees exactly the data of an uninterrupted one.
Eval preprocessing comes from the model's default cfg unless the recipe overrides a field. Grey-scale models
(in_channels 1) get the same pipelines with a grey ending (see `channels.py`).
"""
import difflib
import logging
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

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


def inspect_split(data_dir: str, split: str, rotated: Optional[List[str]] = None) -> Tuple[List[str], int]:
    """Class folder names (sorted, = label order) and image count of one split; clear errors when unusable.

    Every entry is checked cheaply (a regular file, extension, size, header, end marker: see `checks.py`)
    because MindSpore's pipeline crashes or hangs on undecodable files and non-file entries instead of naming
    them. `rotated`, when given, gets the JPEGs whose EXIF orientation is not 1."""
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
        n, bad_here = scan_class_folder(os.path.join(root, c), rotated)
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
    # the val split's folder -> class index of the trained classifier, when it is evaluated by name (a subset of
    # the trained classes, or their names in another order); None: folder order is label order
    val_class_indexing: Optional[Dict[str, int]] = None
    rotated: Tuple[str, ...] = ()  # JPEGs with an EXIF orientation other than 1 (decoded as stored)
    # train images the verify_images cache does not vouch for (-1: the train split was not checked)
    unverified: int = -1
    data_dir: str = ""

    def decode_guard(self, split: str, training: bool) -> bool:
        """Whether `split`'s pipeline wraps its decode op in `guard.ImageGuard`, a Python map function (it costs:
        the demo's 28-px pipeline runs at ~1/3 of its throughput with it): needed for JPEGs whose EXIF orientation
        must be applied, and in training unless every image is verified (a verified image cannot fail to
        decode, so there is nothing to skip)."""
        root = os.path.join(os.path.abspath(os.path.join(self.data_dir, split)), "")
        if any(os.path.abspath(p).startswith(root) for p in self.rotated):
            return True
        return training and self.unverified != 0

    def notes(self) -> List[str]:
        """Log lines about what was found and what the pipeline does with it."""
        lines = []
        if self.rotated:
            shown = ", ".join(self.rotated[:3]) + (", ..." if len(self.rotated) > 3 else "")
            lines.append(f"{len(self.rotated)} JPEG(s) carry an EXIF orientation other than 'as stored' ({shown}): "
                         "train, validate and predict all turn them upright as the tag says, as photo viewers do "
                         "(MindSpore's Decode alone would not; docs/data.md)")
        if self.unverified > 0:
            lines.append(f"decode guard on: {self.unverified} of {self.train_images} train images are not verified, so "
                         "each decode runs through a Python guard that skips, names and counts an image that fails "
                         "(slower: ~1/3 of the data pipeline's throughput at 28 px). Run `python -m "
                         f"mindghost.tools.verify_images --data_dir {self.data_dir}` once (or set verify_images: "
                         "True) and later runs decode with MindSpore's own ops")
        elif self.unverified == 0:
            lines.append("every train image is verified (verify_images): training decodes with MindSpore's own ops, "
                         "without the per-image Python guard")
        if self.val_class_indexing is not None:
            lines.append(f"val classes evaluated by name ({len(self.val_class_indexing)} folders mapped to the "
                         f"trained class indices): {_shown(self.val_class_indexing)}")
        return lines


def _shown(indexing: Dict[str, int], limit: int = 5) -> str:
    items = [f"{k} -> {v}" for k, v in sorted(indexing.items(), key=lambda kv: kv[1])]
    return ", ".join(items[:limit]) + (", ..." if len(items) > limit else "")


def class_name_differences(trained: Sequence[str], found: Sequence[str]) -> str:
    """What differs between the trained class names and the folder names: missing, extra, likely renamed."""
    missing = [n for n in trained if n not in found]
    extra = [n for n in found if n not in trained]
    parts = []
    renamed = {}
    for e in extra:
        close = difflib.get_close_matches(e, missing, n=1, cutoff=0.5)
        if close and close[0] not in renamed.values():
            renamed[e] = close[0]
    if renamed:
        parts.append("renamed? " + ", ".join(f"'{v}' -> '{k}'" for k, v in renamed.items()))
    if missing:
        parts.append(f"missing (trained, no folder): {missing[:8]}" + (" ..." if len(missing) > 8 else ""))
    if extra:
        parts.append(f"extra (a folder, not trained): {extra[:8]}" + (" ..." if len(extra) > 8 else ""))
    if not parts:
        parts.append(f"same names in another order: trained {list(trained)[:8]}, folders {list(found)[:8]}")
    return "; ".join(parts)


def match_class_names(trained: Sequence[str], found: Sequence[str], where: str, source: str,
                      by_name: bool) -> Tuple[Optional[Dict[str, int]], Optional[DataError]]:
    """Compare a split's class folders (`found`, sorted) with the trained class names (`trained`, in class-index
    order, from `source`). Same names in the same order: (None, None). `by_name` (an evaluated split): folders
    that are all trained classes get {folder: trained index} (a subset, or another order, is evaluated by name).
    Anything else: (None, DataError naming the missing, extra and likely renamed classes)."""
    trained, found = list(trained), list(found)
    if trained == found:
        return None, None
    if by_name and set(found) <= set(trained):
        return {name: trained.index(name) for name in found}, None
    need = ("trained classes (all of them, or a subset)" if by_name
            else "exactly these classes (the sorted folder names are the label order)")
    return None, DataError(
        f"'{where}' class folders do not match the {len(trained)} class names {source} records: "
        f"{class_name_differences(trained, found)}. The folders must be {need}: rename the folders, or point "
        "--data_dir at the dataset the model was trained on" + ("" if by_name else
                                                               "; to train new classes pass --new_classifier True"))


def check_dataset(cfg, train: bool, val: bool, class_names: Optional[Sequence[str]] = None,
                  names_source: str = "the checkpoint") -> Tuple[DatasetInfo, List[DataError]]:
    """The one dataset check of train.py and validate.py: each split that is used is scanned (`inspect_split`),
    its class folders must number `cfg.num_classes`, and train and val must hold the same classes.

    class_names: the trained classes (in class-index order) a checkpoint records (`names_source` names it in
    messages). Then the train split must hold exactly these, and the val split these or a subset of them (then
    evaluated by name: `DatasetInfo.val_class_indexing`); a val split that is a subset of the train split's
    classes is evaluated by name too.

    Returns what was found and every problem (not only the first), so the caller can report them together."""
    problems: List[DataError] = []
    found: Dict[str, Tuple[List[str], int]] = {}
    rotated: List[str] = []
    for split, used in ((cfg.train_split, train), (cfg.val_split, val)):
        if not used or split in found:
            continue
        try:
            found[split] = inspect_split(cfg.data_dir, split, rotated)
        except DataError as e:
            problems.append(e)
            if not cfg.data_dir:
                break  # one "no dataset given" is enough
    indexing = None
    train_folders = found[cfg.train_split][0] if train and cfg.train_split in found else None
    counted = False  # the class-count advice is given once
    for split in dict.fromkeys(s for s, used in ((cfg.train_split, train), (cfg.val_split, val)) if used):
        if split not in found:
            continue
        folders, where = found[split][0], os.path.join(cfg.data_dir, split)
        if train and split == cfg.train_split or (class_names is None and train_folders is None):
            if class_names is not None:
                problems += [p for p in match_class_names(class_names, folders, where, names_source, False)[1:] if p]
            elif len(folders) != cfg.num_classes and not counted:
                counted = True
                problems.append(DataError(
                    f"'{cfg.data_dir}/{split}' has {len(folders)} class folders but num_classes is {cfg.num_classes}; "
                    f"pass --num_classes {len(folders)}"))
            continue
        if class_names is not None:  # the val split against the checkpoint's classes
            indexing, problem = match_class_names(class_names, folders, where, names_source, True)
        elif folders == train_folders or set(folders) < set(train_folders):
            indexing, problem = match_class_names(train_folders, folders, where, "the train split", True)
        else:
            indexing, problem = None, DataError(
                f"train and val class folders differ: {sorted(set(train_folders) ^ set(folders))[:5]}; make the class "
                "folders of both splits identical (a val split may also hold a subset of the train classes)")
        if problem:
            problems.append(problem)
    if getattr(cfg, "verify_images", False) and not problems:
        problems += verify_problems(cfg, [s for s in found if s in (cfg.train_split if train else None,
                                                                   cfg.val_split if val else None)])
    unverified = -1
    if train and cfg.train_split in found and not problems:
        from .verify import unverified as count_unverified

        unverified = count_unverified(os.path.join(cfg.data_dir, cfg.train_split), found[cfg.train_split][1])
    any_split = next(iter(found.values()), ([], 0))
    classes = tuple(class_names) if class_names is not None else tuple(train_folders or any_split[0])
    info = DatasetInfo(classes=classes, train_images=found.get(cfg.train_split, ([], 0))[1] if train else 0,
                       val_images=found.get(cfg.val_split, ([], 0))[1] if val else 0,
                       val_class_indexing=indexing, rotated=tuple(sorted(rotated)), unverified=unverified,
                       data_dir=cfg.data_dir)
    return info, problems


def verify_problems(cfg, splits: Sequence[str]) -> List[DataError]:
    """`verify_images`: every image of `splits` decoded once (`verify.py`); a DataError naming the bad ones."""
    import sys

    from .verify import verify_split

    problems = []
    for split in splits:
        root = os.path.join(cfg.data_dir, split)
        files, cached, bad = verify_split(root, cfg.num_workers, cfg.progress and sys.stderr.isatty())
        logging.getLogger("mindghost").info(f"verify_images {root}: {files} images, {files - cached} decoded, "
                                            f"{cached} verified before, {len(bad)} bad")
        if bad:
            problems.append(DataError(format_bad_files(root, bad).replace(
                "cannot be decoded by the training pipeline", "failed the full decode (verify_images)")))
    return problems


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


def train_transforms(cfg, pre: EvalPreprocessing, decode_guard: bool = True) -> list:
    """The train transforms. decode_guard (`DatasetInfo.decode_guard`): the decode op wrapped (`guard.py`): EXIF
    orientation applied, and a sample that fails to decode skipped and counted, up to max_bad_images /
    max_consecutive_bad_images. Without it (every image verified, none rotated) MindSpore's ops run alone, and a
    failure, which verification rules out, stops the run with MindSpore's error naming the file."""
    from mindspore.dataset import vision

    from .guard import ImageGuard, error_samples_replace, tracker

    if not decode_guard:
        error_samples_replace(False)
        return _train_transforms(cfg, pre)
    replace = error_samples_replace(True)
    bad = tracker(os.path.join(cfg.data_dir, cfg.train_split), cfg.max_bad_images, cfg.max_consecutive_bad_images,
                  replace)
    bad.new_epoch()
    ops = _train_transforms(cfg, pre)
    first = ops[0]
    if isinstance(first, vision.RandomCropDecodeResize):
        # MindCV's fused decode + random crop, split in two: a random op called from Python (as the guard calls
        # its op) draws the same crop for every image, so only the decode is guarded and the crop stays a
        # pipeline op. Same crop draws as the fused op; pixels equal for PNG, within crop-decode rounding for JPEG.
        ops = [vision.Decode(), vision.RandomResizedCrop(first.size, first.scale, first.ratio, first.interpolation,
                                                         first.max_attempts)] + ops[1:]
    return [ImageGuard(ops[0], bad)] + ops[1:]


def build_train_loader(cfg, pre: EvalPreprocessing, epoch: int, rank: int = 0, group_size: int = 1,
                       decode_guard: bool = True):
    """The batched train dataset of one epoch (seeded by seed + epoch), sharded by rank; `decode_guard`: see
    `train_transforms`."""
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
        num_classes=cfg.num_classes, transform=train_transforms(cfg, pre, decode_guard), num_parallel_workers=workers,
    )


def build_eval_loader(cfg, pre: EvalPreprocessing, batch_size: Optional[int] = None, rank: int = 0,
                      group_size: int = 1, class_indexing: Optional[Dict[str, int]] = None,
                      decode_guard: bool = True):
    """The whole val split in file order, every sample once; the last batch may be partial. `class_indexing`
    ({folder: label}, `DatasetInfo.val_class_indexing`) labels the folders by the trained classes' indices.

    Sharded (group_size > 1): rank r gets samples r, r + group_size, ... and shards may differ in size by
    one. (MindSpore's DistributedSampler instead pads short shards by repeating samples, which would count
    them twice.) decode_guard False (`DatasetInfo.decode_guard`: no rotated JPEG in the split) leaves out the
    orientation wrapper of `eval_ops`."""
    import mindspore.dataset as ds
    from mindcv.data import create_dataset, create_loader

    from .guard import error_samples_replace

    error_samples_replace(False)  # evaluation never replaces a sample: a failure is an error naming the file
    workers = _workers(cfg)
    by_name = {"class_indexing": dict(class_indexing)} if class_indexing else {}
    dataset = create_dataset("imagenet", root=cfg.data_dir, split=cfg.val_split, shuffle=False,
                             num_samples=cfg.val_samples or None, num_parallel_workers=workers, **by_name)
    if group_size > 1:
        indices = list(range(rank, dataset.get_dataset_size(), group_size))
        dataset = ds.ImageFolderDataset(os.path.join(cfg.data_dir, cfg.val_split), sampler=ds.SubsetSampler(indices),
                                        num_parallel_workers=workers, **by_name)
    return create_loader(dataset, batch_size=batch_size or cfg.resolved_eval_batch_size(), drop_remainder=False,
                         is_training=False, transform=eval_ops(pre, decode_guard), num_parallel_workers=workers)


def eval_ops(pre: EvalPreprocessing, decode_guard: bool = True) -> list:
    """MindSpore ops from encoded image bytes (uint8 array) to a normalized (in_channels, H, W) float32 array:
    decode (EXIF orientation applied unless `decode_guard` is False), resize the short side to `pre.resize_size`,
    center crop `pre.image_size`, normalize. The one eval transform of validation, training's evaluation and
    prediction."""
    from mindcv.data import create_transforms

    mean255, std255 = pre.rgb_mean_std()
    from .guard import ImageGuard

    ops = create_transforms("imagenet", image_resize=pre.image_size, is_training=False, crop_pct=pre.crop_pct,
                            interpolation=pre.interpolation, mean=mean255, std=std255)
    ops = channel_tail(ops, pre.in_channels, pre.mean, pre.std)
    # EXIF orientation applied, as in training; a split known to hold no rotated JPEG skips the Python wrapper
    return [ImageGuard(ops[0])] + ops[1:] if decode_guard else ops
