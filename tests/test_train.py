"""train.py in process: a graph-mode run and its outputs, exact resume, and a short real-data run.

Graph compiles cost 20-40 s each on CPU, so each run is shared by several assertions (module fixtures), and
the resume check runs in PyNative mode (same train-step cell, no compile).
"""
import json
import os

import numpy as np
import pytest
from _tiny_data import FASHION_MNIST, TINY_TRAIN_ARGS, checkpoint_arrays, write_fashion_mnist_subset

COMMON = TINY_TRAIN_ARGS + ["--label_smoothing", "0.1"]


# deterministic graph mode, EMA and momentum state: the uninterrupted reference run for the resume test
RESUME_ARGS = COMMON + ["--mode", "graph", "--deterministic", "True", "--epochs", "2", "--opt", "momentum",
                        "--ema", "True", "--hflip", "0.5", "--drop_rate", "0"]


@pytest.fixture(scope="module")
def graph_run(tiny, train_mod, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("graph_run"))
    summary = train_mod.main(RESUME_ARGS + ["--data_dir", tiny, "--output_dir", out])
    return out, summary


@pytest.mark.slow
@pytest.mark.stack
def test_graph_mode_run_writes_a_complete_run_dir(graph_run):
    out, summary = graph_run
    assert summary["finished"] and summary["global_step"] == 12  # 2 epochs x 24 images / batch 4
    for name in ("config.yaml", "env.json", "train.log", "metrics.jsonl", "summary.json",
                 "checkpoints/last.ckpt", "checkpoints/best.ckpt", "checkpoints/epoch_0001.ckpt"):
        assert os.path.isfile(os.path.join(out, name)), name
    env = json.load(open(os.path.join(out, "env.json")))
    assert {"git_commit", "mindspore", "mindcv", "numpy", "python", "device"} <= set(env)
    metrics = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    assert len(metrics) == 2 and np.isfinite(metrics[0]["train_loss"])
    assert {"val_top1", "val_top5", "val_loss", "val_ema_top1", "lr", "img_per_s"} <= set(metrics[0])
    assert summary["best"]["key"] == "val_ema_top1"  # best tracked on EMA weights when ema is on


@pytest.mark.slow
@pytest.mark.stack
def test_checkpoint_describes_itself_and_loads_for_inference(graph_run):
    from mindghost import create_model
    from mindghost.models import load_checkpoint

    out, _ = graph_run
    path = os.path.join(out, "checkpoints", "last.ckpt")
    state = checkpoint_arrays(path)
    assert any(k.startswith("moments.") for k in state) and any(k.startswith("ema.") for k in state)
    assert "global_step" in state
    model = create_model("ghostnet_050", num_classes=3)
    meta = load_checkpoint(model, path)
    assert meta["epoch"] == 2 and meta["global_step"] == 12 and meta["config"]["model"] == "ghostnet_050"
    load_checkpoint(model, path, ema=True)


@pytest.mark.slow  # the graph run of its fixture
def test_finished_run_dir_is_not_overwritten(graph_run, tiny, train_mod):
    out, _ = graph_run
    with pytest.raises(FileExistsError, match="finished run"):
        train_mod.main(COMMON + ["--data_dir", tiny, "--output_dir", out, "--epochs", "1"])


@pytest.mark.slow
@pytest.mark.stack
def test_resume_reproduces_the_uninterrupted_run(graph_run, tiny, train_mod, tmp_path):
    """Deterministic mode: 2 epochs x 6 steps straight vs. stop after 9 steps (mid-epoch) + automatic resume.
    (Validation does not touch the weights, so the interrupted run skips it to save graph compiles.)"""
    args = RESUME_ARGS + ["--data_dir", tiny, "--val_every", "0"]
    full, part = graph_run[0], str(tmp_path / "part")
    stopped = train_mod.main(args + ["--output_dir", part, "--max_steps", "9"])
    assert not stopped["finished"] and stopped["global_step"] == 9
    resumed = train_mod.main(args + ["--output_dir", part])  # finds checkpoints/last.ckpt and continues
    assert resumed["finished"] and resumed["global_step"] == 12
    a = checkpoint_arrays(os.path.join(full, "checkpoints", "last.ckpt"))
    b = checkpoint_arrays(os.path.join(part, "checkpoints", "last.ckpt"))
    assert set(a) == set(b)
    assert len(os.listdir(os.path.join(part, "checkpoints"))) >= 3  # mid-epoch, epoch 2, last
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    # not all trivially equal: the weights moved
    assert any(not np.array_equal(a[k], a["ema." + k]) for k in a if "ema." + k in a)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST),
                    reason=f"Fashion-MNIST not installed at {FASHION_MNIST} (apt-get install dataset-fashion-mnist)")
def test_short_real_data_run_learns(train_mod, tmp_path):
    """100 steps of batch 32 on 3,200 Fashion-MNIST images with the demo recipe; top-1 on 500 test images."""
    data = write_fashion_mnist_subset(str(tmp_path / "fmnist"), train=3200, val=500)
    summary = train_mod.main([
        "-c", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "demo",
                           "ghostnet_050_fashion_mnist_cpu.yaml"),
        "--data_dir", data, "--output_dir", str(tmp_path / "run"), "--epochs", "1", "--batch_size", "32",
        "--eval_batch_size", "100", "--progress", "False", "--plot", "False", "--warmup_epochs", "0.1",
        "--lr", "0.003", "--log_every", "20",
    ])
    top1 = summary["last"]["val_top1"]
    assert summary["global_step"] == 100
    assert top1 > 40.0, f"top-1 {top1:.1f}% after 100 steps (chance is 10%)"


def test_summary_records_the_global_batch_of_the_log_line(tiny, train_mod, tmp_path):
    """summary.json holds global_batch = per-device batch x devices x accumulation (4 x 1 x 2 = 8), on one device
    too, the same value the `global batch` log line shows."""
    out = tmp_path / "run"
    summary = train_mod.main(COMMON + ["--mode", "pynative", "--data_dir", tiny, "--output_dir", str(out),
                                       "--epochs", "1", "--accum_steps", "2", "--val_every", "0"])
    saved = json.load(open(out / "summary.json"))
    assert saved["global_batch"] == summary["global_batch"] == 8 and saved["devices"] == 1
    assert "global batch 8 (4 per device x 1 x CPU x 2 accumulation)" in open(out / "train.log").read()
