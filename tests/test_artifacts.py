"""Manifests and resume: done iff the manifest matches; a killed stage is redone; a changed parameter
redoes exactly the stages downstream of it."""

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from ovlt.ground.artifacts import ArtifactError, Run, Stage, atomic_dir, fingerprint, safe_name


def _chain(run: Run, params: dict, calls: list[str]) -> None:
    """Three toy stages a -> b -> c, each reading only its own parameter and its input's manifest."""
    upstream = []
    for name in ("a", "b", "c"):
        st = Stage(run, name, iteration=1, params={"value": params[name]}, inputs=upstream)
        if not st.done:
            st.begin()
            (st.dir / "out.txt").write_text(str(params[name]))
            st.finish(counts={"in": 1, "out": 1}, outputs=["out.txt"])
            calls.append(name)
        upstream = [st.manifest]


def test_finished_stages_are_skipped(tmp_path):
    run, calls = Run(tmp_path / "r"), []
    _chain(run, {"a": 1, "b": 2, "c": 3}, calls)
    assert calls == ["a", "b", "c"]
    calls.clear()
    _chain(run, {"a": 1, "b": 2, "c": 3}, calls)
    assert calls == []


@pytest.mark.parametrize("changed,redone", [("a", ["a", "b", "c"]), ("b", ["b", "c"]), ("c", ["c"])])
def test_changed_parameter_redoes_exactly_downstream(tmp_path, changed, redone):
    run, calls = Run(tmp_path / "r"), []
    params = {"a": 1, "b": 2, "c": 3}
    _chain(run, params, calls)
    calls.clear()
    _chain(run, {**params, changed: 99}, calls)
    assert calls == redone
    assert (run.stage_dir(changed, 1) / "out.txt").read_text() == "99"


def test_manifest_records_provenance(tmp_path):
    run = Run(tmp_path / "r")
    st = Stage(run, "a", params={"x": 1})
    st.begin()
    manifest = st.finish(counts={"in": 3, "out": 2})
    on_disk = json.loads((run.stage_dir("a") / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest))
    assert on_disk["counts"] == {"in": 3, "out": 2}
    assert on_disk["fingerprint"] == st.fingerprint
    assert "torch" in on_disk["packages"] and on_disk["wall_seconds"] >= 0


KILLED_STAGE = textwrap.dedent(
    """
    import os, signal, sys
    from ovlt.ground.artifacts import Run, Stage
    st = Stage(Run(sys.argv[1]), "slow", params={"x": 1})
    st.begin()
    shards = st.shards()
    shards.write([{"id": "p0"}, {"id": "p1"}])
    (st.dir / "partial.bin").write_text("half")
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_killed_stage_leaves_no_manifest_and_resumes_from_shards(tmp_path):
    root = tmp_path / "r"
    proc = subprocess.run([sys.executable, "-c", KILLED_STAGE, str(root)], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    run = Run(root)
    st = Stage(run, "slow", params={"x": 1})
    assert not st.done and st.manifest is None
    with pytest.raises(ArtifactError, match="has not finished"):
        run.manifest("slow")
    st.begin()
    assert not (st.dir / "partial.bin").exists(), "a half-written output must not survive the rerun"
    shards = st.shards()
    assert shards.done_keys() == {"p0", "p1"}, "complete shards of the same fingerprint are resumed"
    shards.write([{"id": "p2"}])
    assert [r["id"] for r in shards.rows()] == ["p0", "p1", "p2"]
    st.finish(counts={"out": 3})
    assert st.done and not (st.dir / "shards").exists()


def test_shards_of_other_parameters_are_discarded(tmp_path):
    run = Run(tmp_path / "r")
    st = Stage(run, "gen", params={"k": 4})
    st.begin()
    st.shards().write([{"id": "p0"}])
    st2 = Stage(run, "gen", params={"k": 8})
    st2.begin()
    assert st2.shards().rows() == []


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "ds"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "x").write_text("1")
            raise RuntimeError("killed")
    assert not target.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("err,why", [(errno.ENOSPC, "disk is full"), (errno.EROFS, "not writable"), (errno.EACCES, "not writable")])
def test_write_failures_give_clear_error_and_keep_earlier_stages(tmp_path, monkeypatch, err, why):
    run = Run(tmp_path / "r")
    done = Stage(run, "a", params={})
    done.begin()
    done.finish(counts={"out": 1})

    def failing_replace(src, dst):
        raise OSError(err, os.strerror(err))

    st = Stage(run, "b", params={}, inputs=[done.manifest])
    st.begin()
    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(ArtifactError, match=why) as info:
        st.finish(counts={"out": 1})
    monkeypatch.undo()
    assert "manifest.json" in str(info.value)
    assert Stage(run, "a", params={}).done, "the earlier stage stays valid"
    assert not st.done and not list(st.dir.glob(".*tmp*")), "no temp file is left behind"


@pytest.mark.parametrize("bad", ["../escape", "a/b", "..", "x..y", "", "a b"])
def test_unsafe_names_rejected(bad):
    with pytest.raises(ArtifactError, match="unsafe"):
        safe_name(bad)


def test_fingerprint_ignores_key_order():
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
