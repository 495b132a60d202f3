"""Training curves redrawn from a run directory; missing optional keys are fine; no matplotlib → exit 2."""
import json
import sys

import pytest

from mindghost.tools import plots


def _write_run(run_dir):
    records = [
        {"epoch": 1, "train_loss": 2.1, "lr": 0.1, "img_per_s": 70.0},  # no validation this epoch
        {"epoch": 2, "train_loss": 1.6, "lr": 0.05, "val_top1": 41.0, "val_top5": 88.0, "val_loss": 1.7},
        {"epoch": 3, "train_loss": 1.3, "lr": 0.01, "img_per_s": 74.0, "val_top1": 52.5},  # no top-5 / val loss
    ]
    run_dir.mkdir(exist_ok=True)
    (run_dir / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")


def test_summary_skips_missing_keys():
    s = plots.summarize_history([{"epoch": 1, "train_loss": 2.0}, {"epoch": 2, "val_top1": 30.0, "lr": 0.1}])
    assert s["epochs"] == 2 and s["best_val_top1"] == 30.0 and s["best_val_top1_epoch"] == 2
    assert "median_img_per_s" not in s and "best_val_top5" not in s


def test_plot_curves_from_run_dir(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="optional extra: pip install matplotlib")
    run = tmp_path / "run"
    _write_run(run)
    path = plots.plot_curves(str(run))
    assert path == str(run / "curves.png") and (run / "curves.png").stat().st_size > 1000
    assert plots.main(["--run_dir", str(run), "--out", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    assert "val_top1: best 52.50 (epoch 3)" in out and (tmp_path / "c.png").exists()


def test_missing_matplotlib_exits_2(tmp_path, monkeypatch, capsys):
    _write_run(tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib → ImportError
    assert plots.main(["--run_dir", str(tmp_path)]) == 2
    assert "pip install matplotlib" in capsys.readouterr().out
