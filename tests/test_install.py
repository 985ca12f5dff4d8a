"""What an install without the extras, or on the Pi's numpy, gets.

The pip side (numpy 1.24.4 first, then an extra, and the reverse) is ``scripts/check-minimal-install``,
which installs into fresh venvs; here are the fast checks on this interpreter.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HINT = "pip install 'edgecodec[cli]'"


def _fake_missing_typer(tmp_path: Path) -> dict:
    """An environment where ``import typer`` fails as it does when the 'cli' extra is not installed."""
    fake = tmp_path / "no-typer" / "typer"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'typer'\", name='typer')\n")
    return {**os.environ, "PYTHONPATH": f"{fake.parent}{os.pathsep}{ROOT}"}


def _one_line_hint(r):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and HINT in lines[0] and "typer" in lines[0], r.stderr


def test_entry_point_without_typer_names_the_extra(tmp_path):
    # what the console script does (from edgecodec.cli import main; sys.exit(main())), with typer blocked
    code = "import sys; sys.modules['typer'] = None; sys.argv = ['edgecodec', 'info', 'x.edgc']; from edgecodec.cli import main; main()"
    _one_line_hint(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT))
    r = subprocess.run([sys.executable, "-m", "edgecodec.cli", "--help"], capture_output=True, text=True, env=_fake_missing_typer(tmp_path))
    _one_line_hint(r)


def test_installed_command_without_typer(tmp_path):
    exe = shutil.which("edgecodec", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("the edgecodec console script is not installed next to this interpreter")
    r = subprocess.run([exe, "decode", "a.edgc", "-o", "a.png"], capture_output=True, text=True, env=_fake_missing_typer(tmp_path))
    _one_line_hint(r)


def test_cli_module_imports_without_the_extra():
    code = "import sys, edgecodec.cli; print([m for m in ('typer', 'click', 'cv2', 'rich') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_tflite_extra_keeps_numpy_1():
    """ai-edge-litert >= 2.2 pulls ml_dtypes unpinned and ml_dtypes >= 0.6 needs numpy 2: pip would upgrade
    the Pi's numpy 1.24 (measured: ai-edge-litert 2.3.0 + ml_dtypes 0.7.0 -> numpy 2.4.6)."""
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "ml_dtypes<0.6; python_version < '3.12'" in extras["tflite"]
