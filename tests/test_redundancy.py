"""Feature-map redundancy CLI on a tiny synthetic image: figure, JSON summary, and the cosine maths."""
import json

import numpy as np
import pytest

from mindghost.tools.redundancy import cosine_matrix, summarize


def test_cosine_summary_finds_duplicate_maps():
    rng = np.random.default_rng(0)
    maps = rng.random((2, 4, 5, 5)).astype(np.float32)
    maps[:, 3] = 2.0 * maps[:, 1]  # a scaled copy: cosine 1
    maps[:, 2] = 0.0  # a dead channel is left out
    sim, alive = cosine_matrix(maps)
    s = summarize(sim, alive, top_k=2)
    assert s["dead_channels"] == 1 and s["pairs"] == 3
    assert (s["top_pairs"][0]["a"], s["top_pairs"][0]["b"]) == (1, 3)
    assert s["top_pairs"][0]["cos"] == pytest.approx(1.0)


def test_feature_redundancy_cli_two_models(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="optional extra: pip install matplotlib")
    from PIL import Image

    from mindghost.tools.redundancy import main

    yy, xx = np.mgrid[0:48, 0:40]
    img = np.stack([xx * 6, yy * 5, (xx + yy) * 3], -1).clip(0, 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "img.png")
    out = tmp_path / "fig.png"
    rc = main(["--model", "ghostnet_050", "--compare_model", "ghostnet_050", "--compare_layer", "conv_stem",
               "--random_weights", "--image", str(tmp_path / "img.png"), "--image_size", "32", "--top_k", "3",
               "--out", str(out)])
    assert rc == 0
    assert out.stat().st_size > 1000
    report = json.loads((tmp_path / "fig.json").read_text())
    first, second = report["models"]
    assert first["layer"] == "blocks.0.0.ghost1.primary_conv" and second["layer"] == "conv_stem"
    for m in report["models"]:
        assert 0 <= m["mean_abs_cos"] <= 1 and 0 <= m["frac_pairs_cos_gt_0.9"] <= 1
        assert len(m["top_pairs"]) == min(3, m["pairs"])
    assert "mean |cos|" in capsys.readouterr().out


def test_feature_redundancy_needs_weights_or_flag(tmp_path):
    pytest.importorskip("matplotlib", reason="optional extra: pip install matplotlib")
    from PIL import Image

    from mindghost.errors import UsageError
    from mindghost.tools.redundancy import main

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "img.png")
    with pytest.raises(UsageError) as e:
        main(["--model", "ghostnet_050", "--image", str(tmp_path / "img.png"), "--out", str(tmp_path / "f.png")])
    assert "random_weights" in str(e.value)


def test_feature_redundancy_without_matplotlib_exits_2(tmp_path, monkeypatch, capsys):
    import sys

    from mindghost.tools.redundancy import main

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["--model", "ghostnet_050", "--random_weights", "--image", str(tmp_path)]) == 2
    assert "pip install matplotlib" in capsys.readouterr().out
