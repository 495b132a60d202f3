"""The benchmark CLI (mindghost.tools.benchmark) and the peer harness (benchmarks/compare.py) run and report
positive numbers (no timing assertions: CI machines are noisy)."""
import json

import pytest

from mindghost.tools.benchmark import main as bench_main


@pytest.mark.slow
def test_benchmark_latency_against_peers(tmp_path):
    pytest.importorskip("onnxruntime", reason="optional extra: pip install onnxruntime")
    out = tmp_path / "bench.json"
    rc = bench_main(["--model", "ghostnet_050", "--image_size", "32", "--batch_size", "2", "--peers", "mindcv",
                     "onnxruntime", "--tasks", "latency", "--repeats", "2", "--warmup", "0", "--pipeline", "false",
                     "--num_classes", "10", "--json", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert set(report["results"]) == {"mindghost", "mindcv", "onnxruntime"}
    for name, row in report["results"].items():
        assert row["latency_ms"] > 0 and row["latency_first_call_s"] > 0
        if name != "mindghost":
            assert row["latency_speed_vs_mindghost"] > 0
    assert len(report["raw"]["latency"]["mindcv"]) == 2


@pytest.mark.slow
def test_benchmark_train_step_and_input_pipeline(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = bench_main(["--model", "ghostnet_050", "--image_size", "32", "--batch_size", "2", "--tasks", "train",
                     "--repeats", "2", "--warmup", "1", "--pipeline_images", "8", "--num_classes", "10",
                     "--json", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    row = report["results"]["mindghost"]
    assert row["train_img_per_s"] > 0 and row["train_step_ms"] > 0 and row["train_first_call_s"] > 0
    assert report["pipeline"]["img_per_s"] > 0 and report["pipeline"]["images_timed"] > 0
    assert "| mindghost |" in capsys.readouterr().out


@pytest.mark.slow  # a child process compiles MindCV's model and a train step
def test_subprocess_peer_shipped_interleaves(tmp_path, capsys):
    from benchmarks.compare import main as compare_main

    """The `shipped` peer runs in a child process (MindCV's model, oneDNN's default ISA) and answers each
    measurement over the line protocol; its numbers land in the same table and JSON as the in-process ones."""
    pytest.importorskip("mindcv")
    out = tmp_path / "bench.json"
    rc = compare_main(["--model", "ghostnet_050", "--image_size", "32", "--batch_size", "2", "--peers", "shipped",
                     "--tasks", "latency", "train", "--repeats", "1", "--warmup", "0", "--pipeline", "false",
                     "--num_classes", "10", "--json", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["reference"] == "mindghost" and not report["skipped"]
    row = report["results"]["shipped"]
    assert row["latency_ms"] > 0 and row["train_img_per_s"] > 0 and row["train_first_call_s"] > 0
    assert row["latency_speed_vs_mindghost"] > 0 and row["train_speed_vs_mindghost"] > 0
    assert len(report["raw"]["latency"]["shipped"]) == 1 and len(report["raw"]["train"]["shipped"]) == 1
    info = report["peers"]["shipped"]
    assert info["ONEDNN_MAX_CPU_ISA"] is None  # the child runs without the parent's ISA cap
    assert info["versions"]["mindcv"] and info["pid"] > 0
    assert report["env"]["ONEDNN_MAX_CPU_ISA"]  # while the parent keeps it
    assert "| shipped |" in capsys.readouterr().out


def test_subprocess_peer_reports_child_errors():
    """A child that cannot build its model (here: the torch worker under an interpreter without torch) is a
    PeerError naming the cause, not a hang; a bad request is answered with an error, and the child stays up."""
    import sys

    from benchmarks.peers import PeerError, SubprocessPeer

    common = ["--model", "ghostnet_050", "--image_size", "32", "--batch_size", "2", "--num_classes", "10"]
    try:
        import torch  # noqa: F401  (only probed; the worker would import it in its own process)
    except ImportError:
        with pytest.raises(PeerError, match="torch"):
            SubprocessPeer("torch", sys.executable, ["--framework", "torch", "--source", "timm"] + common)
    peer = SubprocessPeer("echo", sys.executable, ["--framework", "mindspore", "--source", "mindghost"] + common)
    try:
        with pytest.raises(PeerError, match="bad request"):
            peer.run("nonsense")
        assert len(peer.run("latency", 2)) == 2
    finally:
        peer.close()
    assert peer.proc.returncode == 0


@pytest.mark.slow
def test_torch_peer(tmp_path):
    """PyTorch eager (timm) as a peer; needs an interpreter with torch + timm: MINDGHOST_TORCH_PYTHON=/path/python
    (CI has none, so this skips and says so)."""
    import os

    torch_python = os.environ.get("MINDGHOST_TORCH_PYTHON", "")
    if not torch_python or not os.path.exists(torch_python):
        pytest.skip("torch peer: set MINDGHOST_TORCH_PYTHON to the python of an environment with torch + timm")
    from benchmarks.compare import main as compare_main

    out = tmp_path / "bench.json"
    rc = compare_main(["--model", "ghostnet_050", "--image_size", "32", "--batch_size", "2", "--peers", "torch",
                     "--torch_python", torch_python, "--tasks", "latency", "--repeats", "1", "--warmup", "0",
                     "--pipeline", "false", "--num_classes", "10", "--json", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert "torch" not in report["skipped"], report["skipped"]
    assert report["reference"] == "torch"
    assert report["results"]["torch"]["latency_ms"] > 0
    assert report["results"]["mindghost"]["latency_speed_vs_torch"] > 0
    assert report["peers"]["torch"]["versions"]["torch"]
