"""Tests for sppnet.engine.stages: records, reuse, stamps and cascades."""

from __future__ import annotations

import json

import pytest

from sppnet.engine.stages import StageRunner
from sppnet.errors import DamagedFileError


def _counted(calls: list[str], name: str, value):
    def work():
        calls.append(name)
        return value

    return work


def test_a_kept_result_is_recorded_and_reused_with_its_time(tmp_path):
    calls: list[str] = []
    lines: list[str] = []
    first = StageRunner(lines.append, indent=1, allow_nan=False)
    out = first.run(
        "a", _counted(calls, "a", {"x": 1}), record=tmp_path / "a.json", stamp={"format": 2},
        title="[1/1] stage a",
    )  # fmt: skip
    assert out == {"x": 1} and calls == ["a"]
    stored = json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))
    assert list(stored) == ["format", "seconds", "result"]
    assert stored["format"] == 2 and stored["result"] == {"x": 1}
    assert lines[0] == "[1/1] stage a ..." and lines[1].endswith(" s")
    assert first.reused == [] and first.redone

    lines.clear()
    again = StageRunner(lines.append)
    out = again.run(
        "a", _counted(calls, "a", {"x": 2}), record=tmp_path / "a.json", stamp={"format": 2},
        title="[1/1] stage a",
    )  # fmt: skip
    assert out == {"x": 1} and calls == ["a"]  # reused, not rerun
    assert again.reused == ["a"] and not again.redone
    assert again.seconds["a"] == stored["seconds"]  # the time it took then
    assert lines == [f"[1/1] stage a: finished before ({stored['seconds']:.1f} s then), reused"]


def test_another_stamp_reruns_the_stage(tmp_path):
    calls: list[str] = []
    StageRunner().run("a", _counted(calls, "a", 1), record=tmp_path / "a.json", stamp={"f": 1})
    out = StageRunner().run(
        "a", _counted(calls, "a", 2), record=tmp_path / "a.json", stamp={"f": 2}
    )
    assert out == 2 and calls == ["a", "a"]


def test_a_cascade_reruns_every_later_stage_and_says_what_changed(tmp_path):
    def run(settings: dict, calls: list[str], lines: list[str]) -> None:
        runner = StageRunner(lines.append, cascade=True)
        for name in ("one", "two"):
            output = tmp_path / f"{name}.bin"

            def work(name=name, output=output):
                calls.append(name)
                output.write_bytes(b"x")
                return name

            result = runner.run(
                name, work, record=tmp_path / f"{name}.json", stamp={"k": settings[name]},
                load=lambda name=name: f"loaded {name}", outputs=[output],
            )  # fmt: skip
            assert result in (name, f"loaded {name}")

    calls: list[str] = []
    lines: list[str] = []
    run({"one": 1, "two": 1}, calls, lines)
    assert calls == ["one", "two"]
    calls.clear()
    run({"one": 1, "two": 1}, calls, lines)
    assert calls == []  # both reused
    run({"one": 1, "two": 5}, calls, lines)
    assert calls == ["two"]
    assert lines == ["two: settings changed (k 1 -> 5); redoing it and the later stages"]
    calls.clear()
    run({"one": 2, "two": 5}, calls, lines)
    assert calls == ["one", "two"]  # the first changed: the second runs too
    # the record of a stage with its own files is the stamp alone
    assert json.loads((tmp_path / "two.json").read_text(encoding="utf-8")) == {"k": 5}
    calls.clear()
    (tmp_path / "one.bin").unlink()  # a missing output: the stage did not finish
    run({"one": 2, "two": 5}, calls, lines)
    assert calls == ["one", "two"]


def test_a_damaged_record_is_named(tmp_path):
    (tmp_path / "a.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(DamagedFileError, match=r"a\.json"):
        StageRunner().run("a", lambda: 1, record=tmp_path / "a.json", stamp={})
