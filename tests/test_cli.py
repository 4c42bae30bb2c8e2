"""The headless command line: exit codes, messages that name the argument, registries in --help."""
import subprocess
import sys

import pytest

from engine.cli import main
from engine.runs import RunDir


def test_train_digits_exit_0_and_summary_table(tmp_path, capsys):
    code = main(["train", "--dataset", "digits", "--epochs", "2", "--out", str(tmp_path), "--quiet",
                 "--no-diagnostics", "--run-name", "cli"])
    out = capsys.readouterr().out
    assert code == 0
    assert "linear_probe_acc" in out and "pixels_linear_probe_acc" in out
    assert RunDir(tmp_path / "cli").summary()["epochs"] == 2


@pytest.mark.parametrize("argv, names", [
    (["--method", "nope"], ["unknown method 'nope'", "supervised"]),
    (["--encoder", "nope"], ["unknown encoder 'nope'", "convnet"]),
    (["--dataset", "nope"], ["unknown dataset 'nope'", "digits"]),
    (["--epochs", "0"], ["--epochs", "0", "allowed"]),
    (["--batch-size", "-1"], ["--batch-size", "-1", "allowed"]),
    (["--lr", "-0.1"], ["--lr", "-0.1", "allowed"]),
    (["--widths", "x"], ["--widths", "x", "allowed"]),
    (["--freeze"], ["--freeze does not apply to method 'supervised'"]),
    (["--epochs", "two"], ["--epochs", "two"]),
])
def test_bad_argument_exit_2_names_it(tmp_path, capsys, argv, names):
    with pytest.raises(SystemExit) if argv == ["--epochs", "two"] else _no_raise():
        code = main(["train", "--out", str(tmp_path), *argv])
        assert code == 2
    err = capsys.readouterr().err
    for name in names:
        assert name in err


class _no_raise:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_failed_training_exit_1(tmp_path, capsys):
    code = main(["train", "--dataset", "digits", "--lr", "1e6", "--epochs", "40", "--out", str(tmp_path),
                 "--quiet", "--no-diagnostics", "--eval-every", "0"])
    assert code == 1
    assert "lower learning rate" in capsys.readouterr().err


def test_help_lists_the_registries(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for name in ("supervised", "transfer", "digits", "fashion-mnist", "folder:PATH", "convnet", "pixels", "color"):
        assert name in out


def test_python_dash_m_engine_runs_without_qt(tmp_path):
    code = ("import sys; sys.modules['PySide6'] = None; sys.modules['pyqtgraph'] = None; "
            "sys.argv = ['engine', 'train', '--epochs', '1', '--quiet', '--no-diagnostics', '--out', %r]; "
            "import runpy; runpy.run_module('engine', run_name='__main__')" % str(tmp_path))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "linear_probe_acc" in done.stdout
