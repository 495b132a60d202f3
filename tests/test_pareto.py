"""The speed/accuracy picture (issue #20 item 4): models with a published top-1 are plotted, the others listed; the
numbers are written beside the figure. (The measurement itself compiles every model: run by hand, docs/deploy.md.)"""
import json

import pytest

pytest.importorskip("matplotlib")

from mindghost.deploy.pareto import format_row, write  # noqa: E402


def _row(name, top1, ms):
    return {"model": name, "image_size": 224, "paper_top1": top1,
            "mindspore": {"ms_b1": ms, "img_per_s": 100.0, "first_call_s": 1.0},
            "onnxruntime_fp32": {"ms_b1": ms / 3, "img_per_s": 300.0, "size_mb": 5.0}}


def test_plot_and_json(tmp_path):
    report = {"pattern": "ghost*", "batch": 8, "machine": "test cpu", "date": "2026-12-01 00:00 UTC",
              "models": [_row("ghostnet_050", 66.2, 30.0), _row("ghostnetv3_050", None, 40.0)],
              "not_plotted": ["ghostnetv3_050"]}
    png = str(tmp_path / "p.png")
    path = write(report, png)
    assert (tmp_path / "p.png").stat().st_size > 1000
    assert json.loads(open(path).read())["not_plotted"] == ["ghostnetv3_050"]
    line = format_row(report["models"][1], 8)
    assert "ghostnetv3_050" in line and "-" in line and "onnxruntime_fp32" in line
