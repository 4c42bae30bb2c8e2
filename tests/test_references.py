"""The full-protocol references (random init, raw pixels) are measured once and read back by later runs
with the same inputs; a time limit they do not fit leaves them out with a note; the cache's files are
untrusted input."""
import os
import re

import pytest

from engine import events as ev
from engine import references
from engine.budget import TimeBudget
from engine.config import TrainConfig
from engine.evaluation import Evaluator
from engine.schema import load_summary
from engine.training import train


def run(tmp_path, **kw):
    # small splits: a run is a few seconds, its references too
    config = TrainConfig(**({"dataset": "digits", "out": str(tmp_path), "diagnostics": False, "epochs": 1,
                             "train_size": 500, "test_size": 300, "eval_size": 300, "probe_train_size": 500} | kw))
    events = list(train(config))
    assert isinstance(events[-1], ev.Finished), events[-1]
    return events[-1].summary


REFERENCES = ("baseline_linear_probe_acc", "baseline_knn_acc", "pixels_linear_probe_acc")


def test_a_second_run_reads_the_references_the_first_measured(tmp_path, monkeypatch):
    first = run(tmp_path / "a")
    assert len(os.listdir(references.cache_folder())) == 4  # random init, pixels; at step 0 and at the end
    measured = []
    for name in ("_random_init_references", "_pixels_reference"):
        original = getattr(Evaluator, name)
        monkeypatch.setattr(Evaluator, name, lambda self, final, original=original, name=name:
                            (measured.append((name, final)), original(self, final))[1])
    second = run(tmp_path / "b", lr=3e-3)  # another method setting: the same references
    assert {k: second[k] for k in REFERENCES} == {k: first[k] for k in REFERENCES}
    assert measured == []  # step 0's and the end's: all read back
    measured.clear()
    third = run(tmp_path / "c", embedding_dim=32)  # another random init; the pixels' probe does not depend on it
    assert sorted(measured) == [("_random_init_references", False), ("_random_init_references", True)]
    assert third["pixels_linear_probe_acc"] == first["pixels_linear_probe_acc"]


def test_the_cache_keys_on_the_data_itself_not_its_name(tmp_path, monkeypatch):
    run(tmp_path / "a", train_size=400)
    measured = []
    original = Evaluator._pixels_reference
    monkeypatch.setattr(Evaluator, "_pixels_reference",
                        lambda self, final: (measured.append(final), original(self, final))[1])
    run(tmp_path / "b", train_size=450)  # other rows: measured again
    assert True in measured


@pytest.mark.parametrize("content", ['[0.5]', '{"pixels_linear_probe_acc": "0.9"}',
                                     '{"pixels_linear_probe_acc": 1.5}', '{"pixels_linear_probe_acc": true}',
                                     '{"pixels_linear_probe_acc": 0.9, "extra": 1}', '{"pixels', ''])
def test_a_cache_file_that_is_not_one_it_writes_is_ignored(content):
    key = references.entry_key(kind="test")
    references.cache_folder().mkdir(parents=True)
    (references.cache_folder() / f"{key}.json").write_text(content)
    assert references.read(key, ("pixels_linear_probe_acc",)) is None
    assert references.write(key, {"pixels_linear_probe_acc": 0.8125})
    assert references.read(key, ("pixels_linear_probe_acc",)) == {"pixels_linear_probe_acc": 0.8125}


def test_a_cache_that_cannot_be_written_does_not_fail_the_run(tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("EMBEDDING_EXPLORER_CACHE", str(blocked))
    assert not references.write("k", {"pixels_linear_probe_acc": 0.5})
    summary = run(tmp_path / "runs")
    assert all(summary[k] is not None for k in REFERENCES)


def test_the_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDDING_EXPLORER_CACHE", str(tmp_path / "mine"))
    assert references.cache_folder() == tmp_path / "mine" / "references"
    monkeypatch.delenv("EMBEDDING_EXPLORER_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert references.cache_folder() == tmp_path / "xdg" / "embedding-explorer" / "references"


def test_budget_counts_the_ends_references_only_when_they_are_not_cached():
    growth = TimeBudget.PROBE_GROWTH
    # step 0: 14 s, of which 4 s the map and indicators and 4 s the references; the end sees 10x the images
    cold = TimeBudget(minutes=10, started=0.0)
    cold.measured_evaluation(14.0, 4.0, 4.0, scale=10.0, references_cached=False)
    assert cold.final_seconds == pytest.approx(4 + (6 + 4) * 10 * growth) and not cold.skip_references
    warm = TimeBudget(minutes=10, started=0.0)
    warm.measured_evaluation(14.0, 4.0, 4.0, scale=10.0, references_cached=True)
    assert warm.final_seconds == pytest.approx(4 + 6 * 10 * growth) and not warm.skip_references
    # a 3-minute limit: 52 s of references would be over a quarter of it, so they are left out
    short = TimeBudget(minutes=3, started=0.0)
    short.measured_evaluation(14.0, 4.0, 4.0, scale=10.0, references_cached=False)
    assert short.skip_references and short.final_seconds == pytest.approx(4 + 6 * 10 * growth)
    # a resumed run measured no references at step 0: left out unless cached
    resumed = TimeBudget(minutes=10, started=0.0)
    resumed.measured_evaluation(10.0, 4.0, 0.0, scale=10.0, references_cached=False)
    assert resumed.skip_references


def test_a_time_limit_the_references_do_not_fit_leaves_them_out_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(TimeBudget, "MAX_REFERENCES_SHARE", 1e-6)  # none fit
    config = TrainConfig(dataset="digits", out=str(tmp_path / "limited"), diagnostics=False, epochs=1000,
                         time_limit=0.1, train_size=500, test_size=300, eval_size=300, probe_train_size=500)
    events = list(train(config))
    summary = events[-1].summary
    assert any(isinstance(e, ev.Message) and e.text == summary["references_note"] for e in events)
    assert all(k not in summary for k in REFERENCES)
    note = summary["references_note"]
    assert "did not fit the time limit" in note and "0.1-minute limit" in note
    assert re.search(r"with --time-limit \d+ or more", note) and str(references.cache_folder()) in note
    assert "--no-time-limit" in note
    assert len(os.listdir(references.cache_folder())) == 2  # step 0's only
    # the next such run reads step 0's from the cache, so it has no estimate of the end's: left out too
    second = run(tmp_path / "second", epochs=1000, time_limit=0.1)
    assert "have no estimate" in second["references_note"] and all(k not in second for k in REFERENCES)
    # once a run without a limit has measured them, the same time-limited run reads them
    measured = run(tmp_path / "unlimited", epochs=1)
    again = run(tmp_path / "again", epochs=1000, time_limit=0.1)
    assert {k: again[k] for k in REFERENCES} == {k: measured[k] for k in REFERENCES}
    assert "references_note" not in again
    (folder,) = (tmp_path / "limited").iterdir()
    assert load_summary(folder / "summary.json").value["references_note"] == summary["references_note"]
