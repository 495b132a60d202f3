"""The physical floor of a forward on this machine: MACs over the best measured matmul rate, and the bytes
conv/linear layers must move over the copy bandwidth. A research aid for docs/performance.md's questions
("how far from the hardware is MindSpore?"), not a user tool."""
import time
from typing import Callable, Dict, Sequence

import numpy as np

from mindghost.models import layer_macs, trace_forward


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure_floor(seconds: float = 1.0) -> Dict[str, float]:
    """This machine's float32 matmul rate (NumPy's BLAS and a MindSpore MatMul, all cores) and copy bandwidth
    (NumPy, read + write counted): the denominators of the physical floor."""
    import mindspore as ms
    from mindspore import nn, ops

    def rate(fn, work: float) -> float:
        fn()
        best, start = float("inf"), time.perf_counter()
        while time.perf_counter() - start < seconds:
            best = min(best, _timed(fn))
        return work / best

    rng = np.random.default_rng(0)
    out: Dict[str, float] = {}
    # square, and shaped like a 1x1 conv of ghostnet at batch 32 (oc x ic) @ (ic x N*H*W)
    for label, (m, k, n) in {"square_1024": (1024, 1024, 1024), "conv1x1_b32": (120, 40, 32 * 28 * 28)}.items():
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        out[f"numpy_sgemm_{label}_gflops"] = rate(lambda a=a, b=b: a @ b, 2.0 * m * k * n) / 1e9

        class _MatMul(nn.Cell):
            def construct(self, x, y):
                return ops.matmul(x, y)

        mm, ta, tb = _MatMul(), ms.Tensor(a), ms.Tensor(b)
        run = lambda mm=mm, ta=ta, tb=tb: mm(ta, tb).asnumpy()  # noqa: E731  (binds this round's operands)
        out[f"mindspore_matmul_{label}_gflops"] = rate(run, 2.0 * m * k * n) / 1e9
    src = np.ones(64 * 2 ** 20 // 4, np.float32)  # 64 MiB, beyond the caches
    dst = np.empty_like(src)
    out["numpy_copy_gb_per_s"] = rate(lambda: np.copyto(dst, src), 2.0 * src.nbytes) / 1e9
    return out


def count_traffic(model, input_shape: Sequence[int]) -> Dict[str, int]:
    """MACs of conv/linear layers and the float32 bytes they must move at least once (input + output
    activations, weights), from one traced forward at `input_shape` (batch included)."""
    from mindspore import nn

    totals = {"macs": 0, "activation_bytes": 0, "weight_bytes": 0}

    def on_output(_name, cell, inputs, output):
        totals["macs"] += layer_macs(cell, output.shape)
        totals["activation_bytes"] += 4 * (int(np.prod(inputs[0].shape)) + int(np.prod(output.shape)))
        totals["weight_bytes"] += 4 * sum(int(np.prod(p.shape)) for p in cell.get_parameters())

    cells = [(n, c) for n, c in model.cells_and_names() if isinstance(c, (nn.Conv2d, nn.Dense))]
    trace_forward(model, input_shape, cells, on_output=on_output)
    return totals


def physical_floor(model, chans: int, img_size: int, batch: int,
                   rates: Dict[str, float]) -> Dict[str, Dict[str, float]]:
    """Lower bounds for one forward at batch 1 and `batch`: 2·MACs over the best measured matmul rate, and the
    bytes conv/linear layers must move over the copy bandwidth."""
    flops_rate = max(v for k, v in rates.items() if k.endswith("_gflops")) * 1e9
    bandwidth = rates["numpy_copy_gb_per_s"] * 1e9
    floors = {}
    for b in sorted({1, batch}):
        t = count_traffic(model, (b, chans, img_size, img_size))
        compute_ms = 2.0 * t["macs"] / flops_rate * 1e3
        memory_ms = (t["activation_bytes"] + t["weight_bytes"]) / bandwidth * 1e3
        floors[f"b{b}"] = dict(t, compute_ms=compute_ms, memory_ms=memory_ms, floor_ms=max(compute_ms, memory_ms))
    return floors


def format_floor(floor: Dict[str, Dict]) -> str:
    rates = floor["rates"]
    lines = ["physical floor: " + ", ".join(f"{k} {v:.1f}" for k, v in rates.items())]
    for b, f in floor["model"].items():
        lines.append(f"  {b}: {f['macs'] / 1e6:.0f} M MACs → {f['compute_ms']:.2f} ms; "
                     f"{(f['activation_bytes'] + f['weight_bytes']) / 2 ** 20:.1f} MiB → {f['memory_ms']:.2f} ms; "
                     f"floor {f['floor_ms']:.2f} ms")
    return "\n".join(lines)
