"""Input channels of the image pipeline: RGB (3) or grey-scale (1), the one place that knows how either is made.

Images always decode as RGB first (MindSpore's Decode and MindCV's RandomCropDecodeResize do; a grey PNG comes
out with R = G = B), so every colour augmentation sees the image it was written for. For `in_channels` 1 the
end of the pipeline then differs: instead of MindCV's `Normalize` (HWC, 0-255 units) + `HWC2CHW`, the image is
converted to grey (ITU-R 601 luma 0.299 R + 0.587 G + 0.114 B, what Pillow's `convert("L")` and OpenCV's
`COLOR_RGB2GRAY` compute; exact for grey files), turned into a 1 x H x W float array in [0, 1] and normalized
with a one-value mean/std. Other channel counts have no image decoding (there is no 2- or 4-channel image mode
to decode to) and are refused, naming `in_channels`.

Mean/std: a grey model uses one value each. When the recipe gives none, the default is the average of the
model's default RGB mean/std (ImageNet's: 0.449 / 0.226), and the pipeline says so in a log line.
"""
from typing import Dict, List, Optional, Sequence, Tuple

# in_channels -> the image mode a deployment decodes to (Pillow's names)
DECODE_MODES: Dict[int, str] = {1: "L", 3: "RGB"}
LUMA = "0.299 R + 0.587 G + 0.114 B"


def in_channels_problem(in_channels: int, key: str = "in_channels") -> Optional[str]:
    """None when images can be decoded for `in_channels`, else the message naming `key` and the fix."""
    if in_channels in DECODE_MODES:
        return None
    return (f"'{key}' is {in_channels}, but images decode only as L (in_channels 1, grey-scale) or RGB "
            f"(in_channels 3); pass --{key} 1 or 3 (an alpha channel is dropped when decoding)")


def channel_mean_std(mean: Optional[Sequence[float]], std: Optional[Sequence[float]], default_mean: Sequence[float],
                     default_std: Sequence[float], in_channels: int, flags: Optional[Dict[str, str]] = None
                     ) -> Tuple[Tuple[float, ...], Tuple[float, ...], List[str], List[str]]:
    """(mean, std, notes, problems) for a model that takes `in_channels` channels.

    mean/std: the user's values in [0, 1] (None: not given); default_*: the model's default cfg (RGB, 3 values).
    A grey model without a given value gets the average of the default (a note says so). A given value must
    have one number per channel: a 3-value mean with in_channels 1 is a problem naming the key. flags: how a
    key is spelled in messages ({"mean": "--mean"}; default: the config key in quotes)."""
    flags = flags or {}
    out: Dict[str, Tuple[float, ...]] = {}
    notes: List[str] = []
    problems: List[str] = []
    for key, given, default in (("mean", mean, default_mean), ("std", std, default_std)):
        name = flags.get(key, f"'{key}'")
        if given is not None:
            out[key] = tuple(float(v) for v in given)
            if len(out[key]) != in_channels:
                example = round(sum(default) / len(default), 3) if in_channels == 1 else None
                fix = (f"give one value (e.g. {flags.get(key, '--' + key)} {example:g}) or leave it out for the "
                       "grey default" if example is not None else f"give {in_channels} values, one per channel")
                problems.append(f"{name} has {len(out[key])} values but in_channels is {in_channels}: {fix}")
        elif in_channels == 1 and len(default) != 1:
            out[key] = (sum(float(v) for v in default) / len(default),)
            shown = ", ".join(f"{v:g}" for v in default)
            notes.append(f"grey-scale input (in_channels 1): {key} {out[key][0]:.4g}, the average of the model's "
                         f"default RGB {key} ({shown}); set {flags.get(key, '--' + key)} to use another")
        else:
            out[key] = tuple(float(v) for v in default)
    return out["mean"], out["std"], notes, problems


def channel_tail(ops: list, in_channels: int, mean: Sequence[float], std: Sequence[float]) -> list:
    """Adapt a transform list that ends its colour work with `Normalize` (HWC, 0-255 units) then `HWC2CHW` (what
    MindCV's `create_transforms` builds) to `in_channels`: unchanged for 3; for 1 those two ops become grey
    conversion, `ToTensor` (1 x H x W in [0, 1]) and a CHW `Normalize` with the one-value mean/std in [0, 1].
    Ops after them (RandomErasing) work on any channel count. ValueError for other channel counts."""
    from mindspore.dataset import vision

    problem = in_channels_problem(in_channels)
    if problem:
        raise ValueError(problem)
    if in_channels == 3:
        return list(ops)
    at = next((i for i, op in enumerate(ops) if isinstance(op, vision.Normalize)), None)
    if at is None or at + 1 >= len(ops) or not isinstance(ops[at + 1], vision.HWC2CHW):
        # MindCV builds its lists this way; another order would silently normalize the wrong array
        raise RuntimeError(f"cannot adapt the transforms to grey-scale: expected Normalize then HWC2CHW in {ops}")
    return list(ops[:at]) + grey_tail(mean, std) + list(ops[at + 2:])


def grey_tail(mean: Sequence[float], std: Sequence[float]) -> list:
    """RGB HWC uint8 -> normalized 1 x H x W float32: luma, scale to [0, 1], (x - mean) / std."""
    from mindspore.dataset import vision

    return [vision.ConvertColor(vision.ConvertMode.COLOR_RGB2GRAY),  # H x W uint8
            vision.ToTensor(),  # 1 x H x W float32 in [0, 1]
            vision.Normalize(mean=[float(m) for m in mean], std=[float(s) for s in std], is_hwc=False)]


def decode_order(in_channels: int) -> str:
    """What a deployment does to an image before the network (the export JSON's "order")."""
    if in_channels == 1:
        decode = f"decode L (grey; a colour file: luma {LUMA})"
    elif in_channels == 3:
        decode = "decode RGB"
    else:
        decode = f"no image decoding for {in_channels} channels (mindghost decodes only L or RGB): build the array"
    return decode + ", resize short side to resize_size, center crop image_size, x / 255, (x - mean) / std, HWC -> CHW"
