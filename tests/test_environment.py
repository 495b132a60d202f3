"""`import mindghost` applies the CPU environment MindSpore reads at import, and says so when it is too late.

Each case runs in a fresh interpreter: the environment only matters before MindSpore loads."""
import os
import subprocess
import sys

import pytest

from mindghost.runtime import detect_device

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
cpu_only = pytest.mark.skipif(detect_device() != "CPU", reason="the ISA cap applies only when the device is CPU")


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_MAX_CPU_ISA", "GLOG_v")}
    return subprocess.run([sys.executable, "-c", code], env=dict(clean, **env), capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


@cpu_only
def test_import_sets_isa_cap_and_glog():
    out = _python("import mindghost, os; print(os.environ['ONEDNN_MAX_CPU_ISA'], os.environ['GLOG_v'])")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["AVX2", "3"]


@cpu_only
def test_users_isa_choice_is_kept():
    out = _python("import mindghost, os; print(os.environ['ONEDNN_MAX_CPU_ISA'])", ONEDNN_MAX_CPU_ISA="AVX512_CORE")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["AVX512_CORE"]


@cpu_only
def test_mindspore_imported_first_warns_once():
    code = ("import warnings; warnings.simplefilter('always')\n"
            "import mindspore, mindghost, os\n"
            "from mindghost import runtime\n"
            "runtime.prepare_environment('CPU'); runtime.prepare_environment('auto')\n"
            "print('isa', os.environ.get('ONEDNN_MAX_CPU_ISA'))\n")
    out = _python(code)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "isa None" in out.stdout  # too late to set it: not pretended
    # one RuntimeWarning naming both fixes, printed once, and no repeat on later calls
    assert out.stderr.count("mindspore was imported before mindghost") == 1, out.stderr[-3000:]
    assert "RuntimeWarning" in out.stderr and "import mindghost before mindspore" in out.stderr
    assert "ONEDNN_MAX_CPU_ISA=AVX2" in out.stderr


def test_a_users_script_exits_without_cell_teardown_noise():
    """MindSpore 2.10 prints `Exception ignored in: <function Cell.__del__ ...> ... total_instance_count` for every
    live cell at interpreter exit; a plain script that builds a model must end cleanly."""
    out = _python("import mindghost\nmodel = mindghost.create_model('ghostnet_050', num_classes=3)\nprint('built')")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "built"
    assert "Exception ignored" not in out.stderr and "total_instance_count" not in out.stderr, out.stderr[-2000:]
