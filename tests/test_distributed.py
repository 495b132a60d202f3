"""Data-parallel training under msrun on CPU (mccl): checked against one process, by exit codes and files.

Exact equality with one process despite BatchNorm. In train mode BN normalises with the statistics of the
batch it sees, so two ranks with half a batch each normally differ from one process with the whole batch.
The data set is built so that they cannot: every train image appears twice, in two *different* classes, at
adjacent positions of the file order (class_000 and class_001 hold the same picture, class_002 and class_003
the next one, ...). MindSpore's unshuffled shard sampler gives rank r the samples r, r+2, r+4, ..., so at
every step both ranks see the same images with different labels, and one process with the doubled batch
sees each of those images twice. Mean and (biased) variance of a set and of that set doubled are equal at
every layer, so the BN statistics are the same in all three; the losses differ only through the labels, and
the single-process loss is the mean of the two ranks' losses, whose gradient is the mean of their gradients:
exactly what gradient averaging computes. Labels differ between the ranks, so a missing all-reduce, or a
sum instead of a mean (SGD with momentum is sensitive to the scale, Adam would hide it), breaks equality.
What remains is float rounding, which BatchNorm over very few values amplifies: at 32 px the last stage is
1x1, BN sees 4 numbers per channel and 2 steps end 4e-5 apart (relative); at 64 px (2x2, 16 numbers) they end
2.5e-9 apart. Hence 64 px, 2 steps, a small learning rate.

Each test picks free ports; cluster_time_out is short so that a failure ends quickly.
"""
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from _tiny_data import ROOT

MSRUN = os.path.join(os.path.dirname(sys.executable), "msrun")
pytestmark = [pytest.mark.distributed, pytest.mark.slow,  # msrun workers; ~3.5 min for the file on 2 cores
              pytest.mark.skipif(not os.path.isfile(MSRUN), reason="msrun not found next to the Python executable")]

N_CLASSES = 16  # 8 images, each in two classes: one epoch = 2 steps of 4 per rank
RANK_BATCH = 4
RECIPE = os.path.join(ROOT, "configs", "demo", "ghostnet_050_fashion_mnist_cpu.yaml")
# the demo recipe, made deterministic: no flips, whole-image crops, file order, no dropout; SGD (see above)
ARGS = ["-c", RECIPE, "--num_classes", str(N_CLASSES), "--image_size", "64", "--epochs", "1",
        "--warmup_epochs", "0", "--hflip", "0", "--scale", "1", "1", "--ratio", "1", "1", "--shuffle", "False",
        "--deterministic", "True", "--drop_rate", "0", "--opt", "momentum", "--lr", "0.002",
        "--progress", "False", "--plot", "False", "--log_every", "1", "--eval_batch_size", "4"]
TIMEOUT = 60  # --cluster_time_out


def write_paired_imagefolder(root: str, size: int = 64, val_images: int = N_CLASSES + 1) -> str:
    """train: class_{2k} and class_{2k+1} hold the same image (see the module docstring). val: one image per
    class plus one more (17: uneven shards of 9 and 8)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    pictures = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(N_CLASSES // 2)]
    for c in range(N_CLASSES):
        d = os.path.join(root, "train", f"class_{c:03d}")
        os.makedirs(d, exist_ok=True)
        Image.fromarray(pictures[c // 2]).save(os.path.join(d, "0.png"))
    for i in range(val_images):
        d = os.path.join(root, "val", f"class_{i % N_CLASSES:03d}")
        os.makedirs(d, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(os.path.join(d, f"{i}.png"))
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc, timeout: float = 120.0) -> None:
    """Wait until something accepts connections on 127.0.0.1:`port` (node 0's msrun scheduler)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, f"msrun exited {proc.returncode} before its scheduler listened on {port}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"nothing listened on port {port} within {timeout} s")


def env() -> dict:
    e = dict(os.environ)
    e["PATH"] = os.path.dirname(sys.executable) + os.pathsep + e.get("PATH", "")  # msrun starts a bare `python`
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("MINDGHOST_TRACEBACK", None)
    return e


def msrun(log_dir: str, args, worker_num: int = 2, local: int = 2, node_rank: int = 0, port: int = 0):
    cmd = [MSRUN, f"--worker_num={worker_num}", f"--local_worker_num={local}", "--master_addr=127.0.0.1",
           f"--master_port={port or free_port()}", f"--node_rank={node_rank}", f"--log_dir={log_dir}", "--join=True",
           f"--cluster_time_out={TIMEOUT}", "train.py", *args, "--distribute", "True"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def single(args):
    return subprocess.Popen([sys.executable, "train.py", *args, "--distribute", "False"], cwd=ROOT, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc, what: str, timeout: float = 300) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"{what} exited {proc.returncode}:\n{out[-4000:]}"
    return out


def trainable(path: str) -> dict:
    import mindspore as ms

    from mindghost import create_model

    names = [p.name for p in create_model("ghostnet_050", num_classes=N_CLASSES).trainable_params()]
    state = ms.load_checkpoint(path)
    return {k: state[k].asnumpy().astype(np.float64) for k in names}


def rel_diff(a: dict, b: dict) -> float:
    """||a - b|| / ||a|| over all trainable weights together."""
    x = np.concatenate([a[k].ravel() for k in sorted(a)])
    y = np.concatenate([b[k].ravel() for k in sorted(a)])
    return float(np.linalg.norm(x - y) / np.linalg.norm(x))


def run_files(run_dir: str) -> set:
    return {os.path.relpath(os.path.join(d, f), run_dir) for d, _, fs in os.walk(run_dir) for f in fs}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_paired_imagefolder(str(tmp_path_factory.mktemp("paired")))


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory):
    """Three runs side by side: msrun 2 workers on one node; the same as two nodes of one worker each (two
    msrun invocations, node 1 told to write elsewhere); one process with the doubled batch."""
    tmp = tmp_path_factory.mktemp("runs")
    base = ARGS + ["--data_dir", data, "--batch_size", str(RANK_BATCH)]
    t0 = time.time()
    procs = {"two_workers": msrun(str(tmp / "log2"), base + ["--output_dir", str(tmp / "two_workers")])}
    port = free_port()
    procs["node0"] = msrun(str(tmp / "log_n0"), base + ["--output_dir", str(tmp / "nodes")], local=1, node_rank=0,
                           port=port)
    # node 1's msrun also starts a scheduler on this port (see below): let node 0's bind it first, or the two race
    wait_listening(port, procs["node0"])
    procs["node1"] = msrun(str(tmp / "log_n1"), base + ["--output_dir", str(tmp / "node1_dir")], local=1,
                           node_rank=1, port=port)
    procs["single"] = single(ARGS + ["--data_dir", data, "--batch_size", str(2 * RANK_BATCH),
                                     "--output_dir", str(tmp / "single")])
    for name, p in procs.items():
        if name != "node1":
            finish(p, name)
    # On one machine node 1's msrun also sees 127.0.0.1 as its own address and starts a second scheduler on
    # the same port, which fails (msrun exits 1 for that alone); its worker joins node 0's scheduler and
    # trains. On real nodes node 1 starts no scheduler. So node 1 is judged by its worker log (and by the
    # weights of test_two_nodes_match_one_node).
    out, _ = procs["node1"].communicate(timeout=300)
    if procs["node1"].returncode != 0:
        worker = (tmp / "log_n1" / "worker_1.log").read_text(errors="replace")
        assert "mindghost worker: rank 1 of 2" in worker, out[-3000:]
        assert "error:" not in worker and "Traceback" not in worker, worker[-3000:]
    return tmp, time.time() - t0


def _ckpt(run_dir: str) -> str:
    return os.path.join(run_dir, "checkpoints", "last.ckpt")


def test_two_workers_match_one_process_with_the_global_batch(runs):
    tmp, _ = runs
    dist, one = trainable(_ckpt(tmp / "two_workers")), trainable(_ckpt(tmp / "single"))
    init = trainable_init()
    moved = rel_diff(one, init)
    assert moved > 1e-5  # the weights moved
    assert rel_diff(one, dist) < 1e-5
    assert rel_diff(one, dist) < 1e-3 * moved  # and the update itself agrees (measured: 2e-9 of the weights)


def trainable_init() -> dict:
    import mindspore as ms

    from mindghost import create_model

    ms.set_seed(42)
    return {p.name: p.asnumpy().astype(np.float64) for p in
            create_model("ghostnet_050", num_classes=N_CLASSES, drop_rate=0.0).trainable_params()}


def test_replicas_hold_identical_weights(runs):
    """Rank 1 writes no checkpoint; train.py compares every rank's weights with rank 0's at the end (an
    all-reduce) and rank 0 records the result in summary.json."""
    import json

    tmp, _ = runs
    for run in ("two_workers", "nodes"):
        summary = json.load(open(os.path.join(tmp, run, "summary.json")))
        assert summary["replica_weight_diff"] == 0.0, run


def test_two_nodes_match_one_node(runs):
    tmp, _ = runs
    a, b = trainable(_ckpt(tmp / "two_workers")), trainable(_ckpt(tmp / "nodes"))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_only_rank_0_writes(runs):
    """Node 1 (rank 1) was given its own --output_dir: it must stay empty. Rank 0's run dir holds exactly
    one run's files, with no temporary checkpoint left over."""
    tmp, _ = runs
    assert not os.path.exists(tmp / "node1_dir") or not run_files(str(tmp / "node1_dir"))
    for run in ("two_workers", "nodes"):
        files = run_files(str(tmp / run))
        assert {"config.yaml", "env.json", "train.log", "checkpoints/last.ckpt"} <= files, files
        assert not [f for f in files if ".tmp" in f], files


def test_global_batch_is_recorded(runs):
    import yaml

    tmp, _ = runs
    env_info = __import__("json").load(open(os.path.join(tmp, "two_workers", "env.json")))
    assert env_info["devices"] == 2
    assert yaml.safe_load(open(os.path.join(tmp, "two_workers", "config.yaml")))["batch_size"] == RANK_BATCH
    summary = __import__("json").load(open(os.path.join(tmp, "two_workers", "summary.json")))
    assert summary["devices"] == 2 and summary["global_batch"] == 2 * RANK_BATCH  # batch x devices x accumulation


def test_sharded_validation_equals_one_process(data, runs, tmp_path):
    """17 val images over 2 ranks (9 + 8), both ranks evaluating with rank 0's weights and BN statistics: the
    sharded result equals validate.py on the checkpoint rank 0 saved."""
    import json

    tmp, _ = runs
    out = tmp / "two_workers"
    metrics = json.loads(open(os.path.join(out, "metrics.jsonl")).readline())
    res = subprocess.run([sys.executable, "validate.py", *ARGS, "--data_dir", data,
                          "--ckpt_path", _ckpt(out), "--output_dir", str(tmp_path / "val")],
                         cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    ref = json.load(open(tmp_path / "val" / "validate.json"))
    assert ref["num_samples"] == N_CLASSES + 1 and metrics["val_num_samples"] == N_CLASSES + 1
    assert metrics["val_top1"] == ref["top1"] and metrics["val_top5"] == ref["top5"]
    assert abs(metrics["val_loss"] - ref["loss"]) < 1e-4 * max(1.0, abs(ref["loss"]))


def test_a_dead_worker_fails_the_job_naming_its_rank(data, tmp_path):
    """Rank 1 is killed (SIGKILL) once training runs: the launcher exits non-zero well within the cluster
    timeout, names rank 1 and its log, and leaves no partial checkpoint."""
    log_dir, out = tmp_path / "log", tmp_path / "run"
    e = env()
    e.update(LOG_DIR=str(log_dir), MASTER_PORT=str(free_port()), CLUSTER_TIMEOUT=str(TIMEOUT), BIND_CORE="False")
    t0 = time.time()
    p = subprocess.Popen(["bash", "scripts/run_distribute_train.sh", RECIPE, data, "2", *ARGS[2:],
                          "--batch_size", str(RANK_BATCH), "--epochs", "200", "--val_every", "0",
                          "--output_dir", str(out)],
                         cwd=ROOT, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    victim = None
    while time.time() - t0 < 240 and p.poll() is None:
        log0 = log_dir / "worker_0.log"
        if victim is None and log0.exists() and " step 2/" in log0.read_text(errors="replace"):
            victim = _worker_pid(log_dir / "worker_1.log")
            os.kill(victim, signal.SIGKILL)
            t_kill = time.time()
        time.sleep(0.5)
    out_text, _ = p.communicate(timeout=TIMEOUT + 30)
    assert victim is not None, out_text[-3000:]
    assert p.returncode != 0
    assert time.time() - t_kill < TIMEOUT, "the job did not end within the cluster timeout"
    assert f"rank 1 (pid {victim})" in out_text and str(log_dir / "worker_1.log") in out_text, out_text[-3000:]
    ckpts = os.listdir(out / "checkpoints") if (out / "checkpoints").exists() else []
    assert not [f for f in ckpts if ".tmp" in f], ckpts


def _worker_pid(log) -> int:
    """The pid every train.py worker prints first: 'mindghost worker: rank R of N, pid P'."""
    import re

    m = re.search(r"mindghost worker: rank \d+ of \d+, pid (\d+)", open(log, errors="replace").read())
    assert m, f"no pid line in {log}"
    return int(m.group(1))


# ---- in process (no msrun): the pieces of sharded validation and the lr scaling rule


def test_sharded_sums_give_the_exact_global_metrics():
    """Total correct over total samples: shards of 5 and 2 samples add up to the unsharded result, where
    averaging the two shards' accuracies would not."""
    from mindghost.training.evaluate import batch_sums, metrics_from_sums

    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(7, 6)).astype(np.float32), rng.integers(0, 6, 7)
    labels[:3] = logits[:3].argmax(axis=1)  # some right
    whole = metrics_from_sums(batch_sums(logits, labels))
    sharded = metrics_from_sums(batch_sums(logits[:5], labels[:5]) + batch_sums(logits[5:], labels[5:]))
    assert whole["num_samples"] == sharded["num_samples"] == 7
    for k in ("top1", "top5"):
        assert whole[k] == sharded[k]
    assert abs(whole["loss"] - sharded["loss"]) < 1e-6  # float32 logits, summed in another order
    mean_of_shards = (metrics_from_sums(batch_sums(logits[:5], labels[:5]))["top1"]
                      + metrics_from_sums(batch_sums(logits[5:], labels[5:]))["top1"]) / 2
    assert mean_of_shards != whole["top1"]


def test_eval_shards_cover_every_sample_once(data):
    """17 images on 2 ranks: 9 + 8, no sample repeated (MindSpore's DistributedSampler would pad to 9 + 9)."""
    from mindghost.data import build_eval_loader, eval_preprocessing
    from mindghost.training.config import build_config

    cfg = build_config({"data_dir": data, "num_classes": N_CLASSES, "image_size": 64, "deterministic": True})
    pre = eval_preprocessing(cfg, {"input_size": (3, 64, 64), "crop_pct": 1.0, "interpolation": "bilinear",
                                   "mean": (0.5,) * 3, "std": (0.5,) * 3})

    def images(rank, size):
        loader = build_eval_loader(cfg, pre, 4, rank=rank, group_size=size)
        return [img.tobytes() + bytes([int(lbl)]) for imgs, lbls in loader.create_tuple_iterator(output_numpy=True)
                for img, lbl in zip(imgs, lbls)]

    whole, r0, r1 = images(0, 1), images(0, 2), images(1, 2)
    assert (len(whole), len(r0), len(r1)) == (N_CLASSES + 1, 9, 8)
    assert sorted(r0 + r1) == sorted(whole)


def test_linear_lr_scaling_is_opt_in():
    from mindghost.training.config import build_config
    from mindghost.training.optim import build_lr_schedule, linear_lr_scale

    cfg = build_config({"lr": 0.4, "epochs": 2, "scheduler": "constant"})
    assert linear_lr_scale(cfg, 256) == 1.0  # off by default: lr is taken as given
    cfg = build_config({"lr": 0.4, "epochs": 2, "scheduler": "constant", "lr_base_batch": 1024})
    assert linear_lr_scale(cfg, 256) == 0.25  # the 1024 recipe on 2 cards x 128
    assert build_lr_schedule(cfg, 3, linear_lr_scale(cfg, 256)).values == pytest.approx([0.1] * 6)
