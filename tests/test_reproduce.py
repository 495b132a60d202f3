"""mindghost.tools.reproduce: the expected block, the refusals, the speed medians, and a whole shrunk run (a tiny
ImageFolder, ghostnet_050 at 32 px, a made-up expected block, a local weights file) with its report files."""
import json
import os
import subprocess
import sys

import pytest
import yaml
from _tiny_data import ROOT, TINY_TRAIN_ARGS, write_tiny_imagefolder

from mindghost.errors import UsageError
from mindghost.tools import reproduce as R
from mindghost.training.config import ConfigError, build_config

MSRUN = os.path.join(os.path.dirname(sys.executable), "msrun")


def _recipe(tmp_path, expected, epochs=2, name="tiny.yaml"):
    """A tiny recipe: TINY_TRAIN_ARGS as YAML keys, `epochs` epochs, and the given expected block."""
    keys = dict(zip([a.lstrip("-") for a in TINY_TRAIN_ARGS[::2]], TINY_TRAIN_ARGS[1::2]))
    recipe = {k: yaml.safe_load(v) if k not in ("model", "device") else v for k, v in keys.items()}
    recipe.update(epochs=epochs, eval_batch_size=5, val_every=1, num_workers=1, cpu_threads=1, mode="graph")
    if expected is not None:
        recipe["expected"] = expected
    path = tmp_path / name
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def _weights(tmp_path):
    """A local 'published' weights file for the quick check (untrained ghostnet_050, 3 classes)."""
    import mindspore as ms

    from mindghost import create_model

    path = str(tmp_path / "published.ckpt")
    ms.save_checkpoint(create_model("ghostnet_050", num_classes=3), path)
    return path


# ---- the expected block in the schema
def test_expected_block_is_checked_strictly(tmp_path):
    ok = build_config({"expected": {"top1": 70, "top5": 90.5, "source": "made up", "cards": 8}})
    assert ok.expected["top1"] == 70.0 and isinstance(ok.expected["top1"], float) and ok.expected["cards"] == 8
    with pytest.raises(ConfigError, match=r"expected\.top_1.*Did you mean 'top1'"):
        build_config({"expected": {"top_1": 70, "source": "x"}})
    with pytest.raises(ConfigError, match=r"expected\.cards' expects int"):
        build_config({"expected": {"top1": 70, "source": "x", "cards": "eight"}})
    with pytest.raises(ConfigError, match="needs 'source'"):
        build_config({"expected": {"top1": 70}})
    with pytest.raises(ConfigError, match="expects a mapping"):
        build_config({"expected": 70})


def test_every_recipe_states_its_expected_figures():
    """Each recipe has an expected block with a source; a top-1 where its header comment names one."""
    import glob

    for path in glob.glob(os.path.join(ROOT, "configs", "*", "*.yaml")):
        exp = build_config(config_path=path).expected
        assert exp and exp["source"], path
        header = open(path).read().split("\n\n")[0]
        if exp["top1"] is None:
            assert "unknown" in header.lower(), path
        else:
            assert f"{exp['top1']:g}" in header.replace("75.50", "75.5"), path


# ---- refusals, verdict, speed (no graph compile)
def test_refuses_a_recipe_without_expected_figures(tmp_path):
    data = write_tiny_imagefolder(str(tmp_path / "data"))
    recipe = _recipe(tmp_path, {"top1": None, "source": "none published"})
    with pytest.raises(UsageError, match="states no published top-1.*none published"):
        R.reproduce(["-c", recipe, "--data_dir", data])
    v3 = os.path.join(ROOT, "configs", "ghostnetv3", "ghostnetv3_050_ascend.yaml")
    with pytest.raises(UsageError, match="no published top-1"):
        R.reproduce(["-c", v3, "--data_dir", data])


def test_refuses_a_val_split_of_another_class_count(tmp_path):
    data = write_tiny_imagefolder(str(tmp_path / "data"), classes=4)
    recipe = _recipe(tmp_path, {"top1": 50.0, "source": "made up"})
    with pytest.raises(UsageError, match="has 4 class folders.*3 classes.*does not look like the recipe's"):
        R.reproduce(["-c", recipe, "--data_dir", data])


def test_verdict_line():
    assert R.verdict(73.71, 73.78, 0.3) == (
        True, "reproduced: top-1 73.71 vs published 73.78 (-0.07, tolerance 0.30)")
    ok, line = R.verdict(72.78, 73.78, 0.3)
    assert not ok and line.startswith("NOT reproduced: top-1 72.78 vs published 73.78 (-1.00, tolerance 0.30)")
    assert "below by 0.70 points" in line
    assert "above by" in R.verdict(75.0, 73.78, 0.3)[1]


def test_steady_speed_excludes_the_first_epoch_and_the_compile():
    history = [{"epoch": 1, "compile_s": 30.0, "step_intervals": [[1, 9.0], [1, 9.0], [1, 9.0]]},
               {"epoch": 2, "step_intervals": [[2, 0.2], [1, 0.3], [1, 0.1]]}]
    s = R.steady_speed(history, global_batch=8)
    assert s["compile_s"] == 30.0 and s["ms_per_step"] == pytest.approx(100.0)  # steps at 100, 100, 300, 100 ms
    skewed = R.steady_speed([{"epoch": 2, "step_intervals": [[19, 1.9], [1, 0.5], [1, 0.5]]}], global_batch=8)
    assert skewed["ms_per_step"] == pytest.approx(100.0)  # 19 steps at 100 ms outweigh 2 short slow intervals
    assert s["img_per_s"] == pytest.approx(80.0) and not s["warmup_included"]
    one = R.steady_speed(history[:1], global_batch=8)
    assert one["ms_per_step"] == pytest.approx(9000.0) and one["warmup_included"]


# ---- the whole shrunk run (graph compiles: slow)
@pytest.mark.slow
def test_shrunk_run_writes_the_report_and_resumes(tmp_path, capsys):
    data = write_tiny_imagefolder(str(tmp_path / "data"))
    expected = {"top1": 40.0, "top5": 100.0, "source": "made up for the test", "tolerance": 100.0, "cards": 8,
                "global_batch": 1024, "ms_per_step": 211.13, "img_per_s": 4850.0}
    recipe = _recipe(tmp_path, expected)
    run = str(tmp_path / "run")
    argv = ["-c", recipe, "--data_dir", data, "--ckpt_path", _weights(tmp_path), "--output_dir", run]
    report = R.reproduce(argv)
    for name in ("reproduce.md", "reproduce.json", "quick_check.json", "summary.json", "validate.json"):
        assert os.path.isfile(os.path.join(run, name)), name
    saved = json.load(open(os.path.join(run, "reproduce.json")))
    assert saved["columns"] == ["model", "params (M)", "cards", "global batch", "device", "MindSpore",
                                "jit level / mode", "graph compile (s)", "ms/step", "img/s", "top-1 (%)", "top-5 (%)"]
    row = saved["this_run"]
    assert row["model"] == "ghostnet_050" and row["cards"] == 1 and row["global_batch"] == 4
    assert row["device"] == "CPU" and row["mindspore"] and row["jit_level"].endswith("/ graph")
    assert row["compile_s"] > 0 and row["ms_per_step"] > 0
    assert row["img_per_s"] == pytest.approx(4 * 1000.0 / row["ms_per_step"])
    assert 0.5 < row["params_m"] < 1.5  # 3-class head
    assert saved["published"]["ms_per_step"] == 211.13 and saved["published"]["mindspore"] is None
    assert saved["delta"]["top1"] == pytest.approx(row["top1"] - 40.0)
    assert saved["delta"]["ms_per_step"] == pytest.approx(row["ms_per_step"] - 211.13)
    assert saved["delta"]["compile_s"] is None  # not published
    assert not saved["detail"]["warmup_included"]  # two epochs: the medians come from epoch 2
    assert saved["reproduced"] and saved["verdict"].startswith(f"reproduced: top-1 {row['top1']:.2f} vs published "
                                                               "40.00")
    md = open(os.path.join(run, "reproduce.md")).read()
    assert f"**{saved['verdict']}**" in md and "| this run | ghostnet_050 |" in md and "| published |" in md
    assert "| delta |" in md and "made up for the test" in md and "Quick check" in md
    assert saved["verdict"] in capsys.readouterr().out
    metrics = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]
    assert "compile_s" in metrics[0] and "compile_s" not in metrics[1]
    assert all(n >= 1 and s > 0 for m in metrics for n, s in m["step_intervals"])
    assert report["verdict"] == saved["verdict"]

    # the same command again: the finished run is not retrained, the report is written again
    log_size = os.path.getsize(os.path.join(run, "train.log"))
    again = R.reproduce(argv + ["--quick_check", "false", "--tolerance", "0.0"])
    assert os.path.getsize(os.path.join(run, "train.log")) == log_size
    assert again["this_run"]["top1"] == pytest.approx(row["top1"])
    assert not again["reproduced"] and again["verdict"].startswith("NOT reproduced")
    assert R.main(argv + ["--stage", "report", "--tolerance", "0.0"]) == 1  # demo.sh's form; exit code 1


@pytest.mark.slow
def test_weights_only_reports_the_quick_check(tmp_path):
    data = write_tiny_imagefolder(str(tmp_path / "data"))
    recipe = _recipe(tmp_path, {"top1": 99.0, "source": "made up", "weights": "tiny-0000.ckpt"})
    run = str(tmp_path / "run")
    report = R.reproduce(["-c", recipe, "--data_dir", data, "--ckpt_path", _weights(tmp_path), "--output_dir", run,
                          "--weights_only"])
    assert not report["reproduced"] and report["verdict"].startswith("NOT reproduced: published weights: top-1")
    assert "tiny-0000.ckpt" in report["quick_check"]["hint"]
    assert not os.path.isfile(os.path.join(run, "summary.json"))  # nothing trained
    assert "NOT reproduced" in open(os.path.join(run, "reproduce.md")).read()
    # a failed quick check stops the full command before training
    with pytest.raises(UsageError, match="Training was not started"):
        R.reproduce(["-c", recipe, "--data_dir", data, "--ckpt_path", report["quick_check"]["weights"],
                     "--output_dir", run])


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.skipif(not os.path.isfile(MSRUN), reason="msrun not found next to the Python executable")
def test_msrun_launcher_with_two_cpu_workers(tmp_path):
    data = write_tiny_imagefolder(str(tmp_path / "data"))
    recipe = _recipe(tmp_path, {"top1": 40.0, "source": "made up", "tolerance": 100.0}, epochs=1)
    run = str(tmp_path / "run")
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
               LOG_DIR=str(tmp_path / "msrun_log"), MASTER_PORT="8131", BIND_CORE="False", PYTHONPATH=ROOT)
    proc = subprocess.run(["bash", os.path.join(ROOT, "scripts", "run_reproduce.sh"), recipe, data, "2",
                           "--ckpt_path", _weights(tmp_path), "--output_dir", run, "--batch_size", "2"],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    saved = json.load(open(os.path.join(run, "reproduce.json")))
    assert saved["this_run"]["cards"] == 2 and saved["this_run"]["global_batch"] == 4
    assert saved["detail"]["warmup_included"]  # one epoch
    assert "reproduced: top-1" in proc.stdout


@pytest.mark.slow
def test_an_interrupted_run_is_resumed_by_the_same_command(tmp_path):
    """An interruption (here: max_steps stops train.py mid-epoch) leaves no finished run; the command then refuses
    to report, and run again continues the run from its checkpoint instead of starting over."""
    data = write_tiny_imagefolder(str(tmp_path / "data"))
    recipe = _recipe(tmp_path, {"top1": 40.0, "source": "made up", "tolerance": 100.0}, epochs=1)
    run = str(tmp_path / "run")
    argv = ["-c", recipe, "--data_dir", data, "--quick_check", "false", "--output_dir", run]
    with pytest.raises(UsageError, match="no finished run.*rerun the same command"):
        R.reproduce(argv + ["--max_steps", "2"])
    report = R.reproduce(argv)
    log = open(os.path.join(run, "train.log")).read()
    assert "resumed from" in log and "epoch 0, batch 2" in log
    assert report["reproduced"] and report["this_run"]["top1"] is not None
    assert report["detail"]["warmup_included"]  # a one-epoch run says its medians include the warm-up
