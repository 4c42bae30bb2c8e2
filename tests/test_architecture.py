"""The engine never imports Qt: every engine module imports with PySide6 and pyqtgraph blocked."""
import pkgutil
import subprocess
import sys
from pathlib import Path

import engine


def test_engine_imports_without_qt():
    modules = [m.name for m in pkgutil.walk_packages([str(Path(engine.__file__).parent)], "engine.")
               if not m.name.endswith("__main__")]
    code = ("import sys\nfor blocked in ('PySide6', 'pyqtgraph', 'superqt', 'qtpy'): sys.modules[blocked] = None\n"
            + "".join(f"import {m}\n" for m in modules))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert len(modules) > 15
