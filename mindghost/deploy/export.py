"""Writing a built MindSpore cell to a deployment file (MINDIR, ONNX, AIR), and the machine a timing was taken on.
Library code for the commands that export (`mindghost.tools.export`, `quantize`, `benchmark`) and for
`deploy.pareto`."""
import os
import platform

import numpy as np

FORMATS = ("mindir", "onnx", "air")
SUFFIX = {"mindir": ".mindir", "onnx": ".onnx", "air": ".air"}


def export_model(net, x: np.ndarray, path_stem: str, fmt: str) -> str:
    """`mindspore.export` of `net` traced on input `x` (N, C, H, W float32) to `path_stem` + the format's suffix;
    returns the path. Raises RuntimeError when MindSpore reports success but writes no file."""
    import mindspore as ms

    ms.export(net, ms.Tensor(x), file_name=path_stem, file_format=fmt.upper())
    path = path_stem + SUFFIX[fmt]
    if not os.path.isfile(path):
        raise RuntimeError(f"MindSpore reported no error but did not write {path}")
    return path


def machine_description() -> str:
    """CPU model and core count (for the record: timings are only comparable on one machine)."""
    name = ""
    try:
        with open("/proc/cpuinfo") as fh:
            name = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "")
    except OSError:
        pass
    return f"{name or platform.processor() or platform.machine()}, {os.cpu_count()} cores"
