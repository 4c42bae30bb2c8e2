import atexit
import os
import shutil
import tempfile

# Set before any Qt or torch import: no display needed.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("EMBEDDING_EXPLORER_DATA", os.path.join(os.path.dirname(__file__), ".data-cache"))
# the references cache (engine/references.py) of fixtures wider than a test: never the user's own
os.environ["EMBEDDING_EXPLORER_CACHE"] = tempfile.mkdtemp(prefix="embedding-explorer-test-cache-")
atexit.register(shutil.rmtree, os.environ["EMBEDDING_EXPLORER_CACHE"], ignore_errors=True)

import engine  # noqa: E402,F401  (before any test module loads torch: it sets OMP_WAIT_POLICY)
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _own_references_cache(tmp_path, monkeypatch):
    """Each test starts with an empty cache of the full-protocol references (engine/references.py), in
    its own folder: no test reads what another measured, none writes to the user's cache."""
    monkeypatch.setenv("EMBEDDING_EXPLORER_CACHE", str(tmp_path / "cache"))


@pytest.fixture(autouse=True)
def _garbage_collected_in_gui_thread(request):
    """A test with Qt collects Python's cyclic garbage in its GUI thread only, as the window does
    (``explorer.jobs.garbage_collected_in_gui_thread``: a collection in a worker thread froze the suite
    in CI); the others as Python does."""
    if not {"qtbot", "qapp"} & set(request.fixturenames):
        yield
        return
    request.getfixturevalue("qapp")
    from explorer.jobs import garbage_collected_in_gui_thread

    with garbage_collected_in_gui_thread():
        yield


@pytest.fixture(autouse=True)
def _seed_and_threads():
    import torch

    torch.manual_seed(0)
    yield
