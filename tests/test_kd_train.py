"""Knowledge distillation through train.py: both loss parts logged, the teacher frozen and never saved, the
student's checkpoint strict for the bare model, exact resume, refusals before anything is written, msrun.

Three GRAPH compiles (one KD run of 2 epochs, then the same run stopped mid-epoch and resumed); the refusals
never reach a compile. The teacher is a ghostnet_050 with random weights saved as a checkpoint: what it
teaches does not matter here, only that it is loaded, used and left alone.
"""
import json
import os

import numpy as np
import pytest
from _tiny_data import TINY_TRAIN_ARGS, checkpoint_arrays

from mindghost.models import CheckpointError
from mindghost.training.config import ConfigError

NUM_CLASSES = 3
KD_ARGS = TINY_TRAIN_ARGS + [
    "--mode", "graph", "--deterministic", "True", "--epochs", "2", "--ema", "True", "--drop_rate", "0",
    "--val_every", "0", "--teacher", "ghostnet_050", "--kd_temperature", "2", "--kd_weight", "0.7",
    "--label_weight", "0.5"]


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory):
    import mindspore as ms

    from mindghost import create_model

    path = str(tmp_path_factory.mktemp("teacher") / "teacher.ckpt")
    ms.save_checkpoint(create_model("ghostnet_050", num_classes=NUM_CLASSES), path)
    return path


@pytest.fixture(scope="module")
def kd_run(tiny, train_mod, teacher_ckpt, tmp_path_factory):
    """The KD run, keeping a handle on the teacher the plan built (to check it after training)."""
    from mindghost.training import plan

    built = []
    original = plan.plan_teacher

    def recording(cfg):
        built.append(original(cfg))
        return built[-1]

    plan.plan_teacher = recording
    try:
        out = str(tmp_path_factory.mktemp("kd_run"))
        summary = train_mod.main(KD_ARGS + ["--data_dir", tiny, "--output_dir", out, "--teacher_ckpt", teacher_ckpt])
    finally:
        plan.plan_teacher = original
    return out, summary, built[0]


@pytest.mark.slow  # the graph runs of `kd_run`
def test_kd_run_logs_both_loss_parts(kd_run):
    out, summary, _ = kd_run
    assert summary["finished"] and summary["global_step"] == 12
    metrics = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    for m in metrics:
        assert np.isfinite(m["train_label_loss"]) and m["train_kd_loss"] > 0
        # the epoch means are means of the same steps: the weighted sum is the logged total
        np.testing.assert_allclose(m["train_loss"], 0.5 * m["train_label_loss"] + 0.7 * m["train_kd_loss"],
                                   rtol=1e-5)
    log = open(os.path.join(out, "train.log")).read()
    assert "distillation: teacher ghostnet_050" in log and "kd " in log


@pytest.mark.slow  # the graph runs of `kd_run`
def test_checkpoint_holds_the_student_only_and_loads_strictly(kd_run):
    from mindghost import create_model
    from mindghost.models import load_checkpoint

    out, _, _ = kd_run
    path = os.path.join(out, "checkpoints", "last.ckpt")
    state = checkpoint_arrays(path)
    assert not [k for k in state if "teacher" in k or k.startswith("last_")]
    assert any(k.startswith("ema.") for k in state)
    student = create_model("ghostnet_050", num_classes=NUM_CLASSES)
    load_checkpoint(student, path)  # strict: a teacher key would be "unexpected"
    load_checkpoint(student, path, ema=True)
    names = {p.name for p in student.get_parameters()}
    assert {k[len("ema."):] for k in state if k.startswith("ema.")} == names  # EMA tracks the student, all of it


@pytest.mark.slow  # the graph runs of `kd_run`
def test_teacher_is_unchanged_after_training(kd_run, teacher_ckpt):
    _, _, teacher = kd_run
    saved = checkpoint_arrays(teacher_ckpt)
    params = {p.name[len("teacher."):]: p.asnumpy() for p in teacher.get_parameters()}
    assert all(p.name.startswith("teacher.") for p in teacher.get_parameters())
    assert params.keys() == saved.keys() and any(k.endswith("moving_mean") for k in params)
    for k, v in saved.items():  # weights and BN statistics, bit for bit
        np.testing.assert_array_equal(params[k], v, err_msg=k)


@pytest.mark.slow  # the graph runs of `kd_run`
def test_kd_resume_reproduces_the_uninterrupted_run(kd_run, tiny, train_mod, teacher_ckpt, tmp_path):
    full = kd_run[0]
    args = KD_ARGS + ["--data_dir", tiny, "--teacher_ckpt", teacher_ckpt, "--output_dir", str(tmp_path / "part")]
    stopped = train_mod.main(args + ["--max_steps", "9"])
    assert not stopped["finished"] and stopped["global_step"] == 9
    resumed = train_mod.main(args)
    assert resumed["finished"] and resumed["global_step"] == 12
    a = checkpoint_arrays(os.path.join(full, "checkpoints", "last.ckpt"))
    b = checkpoint_arrays(str(tmp_path / "part" / "checkpoints" / "last.ckpt"))
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    metrics = [json.loads(line) for line in open(tmp_path / "part" / "metrics.jsonl")]
    assert metrics[-1]["epoch"] == 2 and "train_kd_loss" in metrics[-1]


# ---- refusals: before anything is written, no compile ----

@pytest.mark.parametrize("extra,error,match", [
    ([], ConfigError, "needs 'teacher_ckpt'"),
    (["--teacher_ckpt", "/nonexistent/teacher.ckpt"], CheckpointError, "teacher checkpoint not found"),
])
def test_bad_teacher_is_refused_before_anything_is_written(tiny, train_mod, tmp_path, extra, error, match):
    out = tmp_path / "run"
    with pytest.raises(error, match=match):
        train_mod.main(KD_ARGS + ["--data_dir", tiny, "--output_dir", str(out)] + extra)
    assert not out.exists()


def test_bad_teacher_is_listed_with_the_other_problems(tiny, train_mod, tmp_path, teacher_ckpt):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="2 problems found before starting") as err:
        train_mod.main(KD_ARGS + ["--data_dir", tiny, "--output_dir", str(out), "--teacher", "ghostnet_100",
                                  "--teacher_ckpt", teacher_ckpt, "--batch_size", "64"])
    assert "teacher_ckpt (ghostnet_100)" in str(err.value) and "lower batch_size" in str(err.value)
    assert not out.exists()


@pytest.mark.parametrize("flags,match", [
    (["--teacher_ckpt", "t.ckpt"], "'teacher' is empty"),
    (["--teacher", "ghostnet_050", "--kd_temperature", "0"], "kd_temperature"),
    (["--teacher", "ghostnet_050", "--kd_weight", "0", "--label_weight", "0"], "both 0"),
])
def test_kd_values_are_checked_by_the_config(flags, match, capsys):
    from mindghost.training.config import parse_args

    with pytest.raises(SystemExit):
        parse_args(flags)
    assert match in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.stack  # the fast tier's msrun run: 2 CPU workers
def test_kd_run_under_msrun(tiny, teacher_ckpt, tmp_path):
    """2 CPU workers, each building its own teacher: exits 0, rank 0 writes a student-only checkpoint."""
    from test_distributed import MSRUN, finish, msrun

    if not os.path.isfile(MSRUN):
        pytest.skip("msrun not found next to the Python executable")
    args = KD_ARGS + ["--data_dir", tiny, "--teacher_ckpt", teacher_ckpt, "--output_dir", str(tmp_path / "run"),
                      "--epochs", "1"]
    finish(msrun(str(tmp_path / "log"), args), "msrun KD run")
    state = checkpoint_arrays(str(tmp_path / "run" / "checkpoints" / "last.ckpt"))
    assert state and not [k for k in state if "teacher" in k]
    metrics = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert json.load(open(tmp_path / "run" / "summary.json"))["devices"] == 2
    assert np.isfinite(metrics[0]["train_kd_loss"])
