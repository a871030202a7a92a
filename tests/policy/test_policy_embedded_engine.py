"""The embedded engine: loading errors that name the file, hot reload, threads, and the
guard that falls back to the interpreter when regorus' VM departs from Rego semantics."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from policy_helpers import POLICY_DIR, scenario

from lacuna_orchestration.errors import PolicyError
from lacuna_orchestration.policy import rego
from lacuna_orchestration.policy.decide import FAIL_CLOSED_POLICY, PolicyDecider
from lacuna_orchestration.policy.rego import EmbeddedRegoEngine, load_bundle


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")
    st = path.stat()  # make sure the change is visible even on a coarse-mtime filesystem
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_syntax_error_names_file_and_line(bundle_copy: Path) -> None:
    broken = bundle_copy / "scratch_space.rego"
    broken.write_text("package lacuna.policies.scratch_space\n\ndecision := {\n", encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        EmbeddedRegoEngine(bundle_copy)
    message = str(info.value)
    assert f"{broken}:" in message
    assert ":4:" in message or ":3:" in message  # the line where the object is left open
    assert "\n" not in message


def test_unknown_function_names_file_and_line(bundle_copy: Path) -> None:
    _edit(
        bundle_copy / "marketing_domain.rego",
        "for_marketing if lower(input.context.domain) in cfg.domains",
        "for_marketing if lowercase(input.context.domain) in cfg.domains",
    )
    with pytest.raises(PolicyError, match=r"marketing_domain\.rego:\d+:\d+: .*lowercase"):
        EmbeddedRegoEngine(bundle_copy)


def test_missing_folder_and_empty_folder_are_policy_errors(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="does not exist"):
        EmbeddedRegoEngine(tmp_path / "nope")
    with pytest.raises(PolicyError, match="no .rego policy files"):
        EmbeddedRegoEngine(tmp_path)


def test_a_policy_package_left_out_of_the_lists_refuses_to_load(bundle_copy: Path) -> None:
    (bundle_copy / "forgotten.rego").write_text(
        "package lacuna.policies.forgotten\n\n"
        'metadata := {"id": "forgotten", "title": "", "version": "1", "steward": ""}\n\n'
        'decision := {"allow": false, "reasons": ["no"], "alternatives": []}\n',
        encoding="utf-8",
    )
    with pytest.raises(PolicyError, match="forgotten .*neither enabled_policies"):
        EmbeddedRegoEngine(bundle_copy)


def test_bad_data_json_is_a_policy_error(bundle_copy: Path) -> None:
    (bundle_copy / "data.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(PolicyError, match=r"data\.json"):
        EmbeddedRegoEngine(bundle_copy)


def test_revision_is_a_hash_of_the_files(bundle_copy: Path) -> None:
    first = load_bundle(bundle_copy).revision
    assert first == load_bundle(POLICY_DIR).revision
    assert len(first) == 64
    _edit(bundle_copy / "data.json", '"analytics",', '"analytics", "research",')
    assert load_bundle(bundle_copy).revision != first


def test_hot_reload_picks_up_an_edited_policy(bundle_copy: Path) -> None:
    engine = EmbeddedRegoEngine(bundle_copy, reload_interval_s=0)
    decider = PolicyDecider(engine)
    doc, c = scenario()
    before = decider.decide(doc, action="export", classification=c)
    assert before.policy_version == "2.0.0"
    old_revision = engine.revision

    policy = bundle_copy / "export_governance.rego"
    _edit(policy, '"version": "2.0.0"', '"version": "2.1.0"')
    _edit(policy, "Cannot export %s data to unmanaged", "Do not export %s data to unmanaged")

    after = decider.decide(doc, action="export", classification=c)
    assert after.policy_version == "2.1.0"
    assert after.reasons[0].startswith("Do not export PII data")
    assert engine.revision != old_revision
    assert after.bundle_revision == engine.revision


def test_reload_waits_for_the_interval_unless_asked(bundle_copy: Path) -> None:
    engine = EmbeddedRegoEngine(bundle_copy, reload_interval_s=3600)
    doc, _ = scenario()
    _edit(bundle_copy / "export_governance.rego", '"version": "2.0.0"', '"version": "9.9.9"')
    assert engine.evaluate(doc)[0].version == "2.0.0"
    engine.reload()
    assert engine.evaluate(doc)[0].version == "9.9.9"


def test_a_broken_edit_fails_closed_until_fixed(bundle_copy: Path) -> None:
    engine = EmbeddedRegoEngine(bundle_copy, reload_interval_s=0)
    decider = PolicyDecider(engine)
    doc, c = scenario(environment="development", purpose="analytics")
    assert decider.decide(doc, action="export", classification=c).allow

    policy = bundle_copy / "scratch_space.rego"
    good = policy.read_text(encoding="utf-8")
    _edit(policy, "development if environment in cfg.environments", "development if {")
    denied = decider.decide(doc, action="export", classification=c)
    assert not denied.allow
    assert denied.policy_id == FAIL_CLOSED_POLICY
    assert "scratch_space.rego:" in denied.error
    assert denied.bundle_revision == engine.revision == load_bundle(bundle_copy).revision
    with pytest.raises(PolicyError, match="scratch_space.rego"):
        engine.reload()

    policy.write_text(good, encoding="utf-8")
    st = policy.stat()
    os.utime(policy, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    assert decider.decide(doc, action="export", classification=c).allow


def test_threads_each_get_their_own_vm(embedded: EmbeddedRegoEngine) -> None:
    doc, _ = scenario()
    expected = embedded.evaluate(doc)
    names: set[str] = set()

    def work(_: int) -> bool:
        names.add(threading.current_thread().name)
        return all(embedded.evaluate(doc) == expected for _ in range(50))

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert all(pool.map(work, range(16)))
    assert len(names) > 1


def test_a_thread_releases_its_own_vm_and_can_evaluate_again(
        embedded: EmbeddedRegoEngine) -> None:
    """A thread about to end drops its VM itself (regorus objects must die where they were
    made); the same thread evaluating later simply builds a new one."""
    doc, _ = scenario()
    seen: list[bool] = []  # whether the thread holds a VM (never the VM: it must die there)

    def work() -> None:
        first = embedded.evaluate(doc)
        seen.append(embedded._token in rego._thread_states())
        embedded.release_thread()
        seen.append(embedded._token in rego._thread_states())
        assert embedded.evaluate(doc) == first
        embedded.release_thread()  # as a thread about to end does: nothing left to drop

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == [True, False]


def test_an_engine_collected_elsewhere_leaves_each_vm_to_its_own_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server's worker threads outlive an engine collected on another thread (a reload of
    the settings, the end of a test, shutdown). Its VMs must be dropped by the threads that
    made them: regorus objects dropped elsewhere make pyo3 report "Rvm is unsendable, but is
    being dropped on another thread" (what an engine-owned ``threading.local`` did)."""
    import gc

    doc, _ = scenario()
    unraisable: list[str] = []
    monkeypatch.setattr("sys.unraisablehook", lambda u: unraisable.append(repr(u.exc_value)))
    jobs: list[EmbeddedRegoEngine | None] = []
    ready, go, done = threading.Event(), threading.Event(), threading.Event()
    held: list[list[int]] = []  # the worker's engine tokens after each step

    def worker() -> None:
        engine = jobs.pop()
        assert engine is not None
        engine.evaluate(doc)
        held.append(list(rego._thread_states()))
        del engine
        ready.set()
        go.wait(30)
        fresh = jobs.pop()  # a second engine: the miss drops the first one's VM, here
        assert fresh is not None
        fresh.evaluate(doc)
        held.append(list(rego._thread_states()))
        fresh.release_thread()
        done.set()

    first = EmbeddedRegoEngine(POLICY_DIR)
    first_token = first._token
    jobs.append(first)
    thread = threading.Thread(target=worker)
    thread.start()
    assert ready.wait(30)
    first.evaluate(doc)  # this thread's own VM of it, dropped here when it is collected
    del first
    gc.collect()
    assert first_token in rego._RETIRED and first_token not in rego._thread_states()
    second = EmbeddedRegoEngine(POLICY_DIR)
    jobs.append(second)
    go.set()
    assert done.wait(30)
    thread.join(30)
    assert first_token in held[0]
    assert first_token not in held[1] and second._token in held[1]
    assert unraisable == []


def test_exit_with_worker_threads_still_holding_vms_is_quiet() -> None:
    """A server exits while its daemon worker threads still hold VMs; the interpreter clears
    those threads' storage on the main thread, which must not drop the VMs there (pyo3 then
    prints "Rvm is unsendable" on every shutdown). A thread that ends frees its own."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import gc, threading, weakref
        from lacuna_orchestration.policy import rego
        engine = rego.EmbeddedRegoEngine({str(POLICY_DIR)!r})
        doc = {{"action": "read", "source": {{"tags": []}}}}
        ready, freed = threading.Event(), []

        def ending():
            engine.evaluate(doc)
            freed.append(weakref.ref(rego._thread_states()[engine._token].vm))

        def lingering():
            engine.evaluate(doc)
            ready.set()
            threading.Event().wait()

        worker = threading.Thread(target=ending)
        worker.start()
        worker.join()
        gc.collect()
        assert freed[0]() is None, "an ended thread's VM must be freed with its thread"
        threading.Thread(target=lingering, daemon=True).start()
        assert ready.wait(30)
        engine.evaluate(doc)
        print("done")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done"
    assert "unsendable" not in done.stderr, done.stderr


def _tiny_bundle(root: Path, decisions_rule: str) -> Path:
    root.mkdir()
    (root / "lacuna.rego").write_text("package lacuna\n\n" + decisions_rule, encoding="utf-8")
    return root


_ENTRY = '{"package": "p", "metadata": {"id": "p", "title": "", "version": "1", "steward": ""}, '


def test_vm_undefined_where_the_interpreter_answers_switches_to_the_interpreter(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # regorus' VM loses an `else` whose first body reads undefined data.
    root = _tiny_bundle(
        tmp_path / "else",
        "f(x) := y if { y := data.nothing[x] } else := true\n\n"
        f'decisions := [{_ENTRY}"decision": {{"allow": f("k"), "reasons": [], "alternatives": []}}}}]\n',
    )
    engine = EmbeddedRegoEngine(root, reload_interval_s=None)
    assert engine.mode == "vm"
    assert [r.allow for r in engine.evaluate({})] == [True]
    assert engine.mode == "interpreter"
    assert "disagree" in caplog.text


def test_sampled_shadow_check_catches_a_conflict_the_vm_hides(tmp_path: Path) -> None:
    # A complete-rule conflict is an error in Rego; the VM silently makes it undefined, which
    # here would turn a denial into an allow.
    root = _tiny_bundle(
        tmp_path / "conflict",
        "x := 1\n\nx := 2 if input.a\n\n"
        'deny contains "no" if { input.a; x }\n\n'
        f'decisions := [{_ENTRY}"decision": {{"allow": count(deny) == 0, "reasons": [], '
        '"alternatives": []}}]\n',
    )
    unguarded = EmbeddedRegoEngine(root, reload_interval_s=None, shadow_every=0)
    assert [r.allow for r in unguarded.evaluate({"a": True})] == [True]  # the VM's fail-open

    guarded = EmbeddedRegoEngine(root, reload_interval_s=None, shadow_every=1)
    with pytest.raises(PolicyError, match="conflict"):
        guarded.evaluate({"a": True})
    assert guarded.mode == "interpreter"
    assert [r.allow for r in guarded.evaluate({"a": False})] == [True]


def test_undefined_entry_point_is_an_error(tmp_path: Path) -> None:
    root = _tiny_bundle(tmp_path / "undef", "decisions := [] if input.never\n")
    engine = EmbeddedRegoEngine(root, reload_interval_s=None)
    with pytest.raises(PolicyError, match="undefined"):
        engine.evaluate({})


def test_bundle_without_entry_point_refuses_to_load(tmp_path: Path) -> None:
    root = tmp_path / "noentry"
    root.mkdir()
    (root / "x.rego").write_text("package other\n\nx := 1\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="declares package lacuna"):
        EmbeddedRegoEngine(root)


def test_input_that_is_not_json_and_a_closed_engine_are_errors(tmp_path: Path) -> None:
    engine = EmbeddedRegoEngine(POLICY_DIR, reload_interval_s=None)
    with pytest.raises(PolicyError, match="not JSON-serialisable"):
        engine.evaluate({"action": object()})
    engine.close()
    with pytest.raises(PolicyError, match="closed"):
        engine.evaluate({})


def test_interpreter_mode_matches_vm_mode(embedded: EmbeddedRegoEngine) -> None:
    interpreter = EmbeddedRegoEngine(POLICY_DIR, mode="interpreter", reload_interval_s=None)
    doc, _ = scenario(domain="marketing", purpose="profiling")
    assert interpreter.evaluate(doc) == embedded.evaluate(doc)
