"""The embedded Rego engine: the policy bundle compiled once, evaluated in process.

Which engine, and why — measured on this repository's ``policies/`` with the seed input (all
four policies deny: the heaviest case), input JSON in and answer JSON out, Python 3.11 on 2
cores; ``benchmarks/bench_policy.py`` repeats the comparison:

===================================================  ==========  ============================
engine                                               evals/s     answer
===================================================  ==========  ============================
regorus 0.13 compiled VM (``Program`` + ``Rvm``)     ~20,000     identical to the interpreter
regorus 0.13 interpreter (``Engine.eval_rule``)      ~3,000      the reference
regopy 1.5.2, prebuilt bundle + entrypoint query     ~1,000      wrong (see below)
regopy 1.5.2, ``query()`` (recompiles every time)    ~70         wrong
===================================================  ==========  ============================

regopy (rego-cpp) is out on correctness before speed: ``sprintf("%s", [concat(...)])`` comes
back with the inner string quoted and unescaped (``Cannot export "PII" data``), which also makes
its own JSON output unparseable, and it rejects ``some k, v in x`` inside comprehensions.

The hot path therefore runs regorus' compiled VM, about 7× faster than its tree-walking
interpreter (which alone would miss even the seed's 5,000 evaluations/s). The VM is younger and three of its departures from Rego semantics were found while
measuring: an ``else`` after a body that reads undefined data yields undefined instead of the
``else`` value, a complete-rule conflict yields undefined instead of an error, and a builtin
given an undefined value (``sprintf("%s", [undefined_rule])``, also through ``x := ...``)
yields the text ``<undefined>`` where the body should fail. The shipped policies avoid ``else``
and test definedness before building text, a test compares VM and interpreter on every
scenario, and the engine guards against the rest:

* every ``shadow_every``-th evaluation on each thread also runs the interpreter; when the two
  disagree the engine logs it, answers with the interpreter and stays on the interpreter until
  the bundle changes (an interpreter error — a conflict — is a ``PolicyError``: fail closed);
* a bundle the VM cannot compile but the interpreter can run is served by the interpreter,
  with a warning (``mode="auto"``); ``mode="vm"``/``"interpreter"`` force one of them.

regorus' Python objects are *unsendable* (used from another thread they panic), so the bundle
is compiled once into bytes and every thread builds its own VM from them on first use. Changed
files are picked up without a restart: at most every ``reload_interval_s`` an evaluation
compares file sizes and mtimes, rehashes on change and recompiles. A bundle that no longer
compiles makes every evaluation raise ``PolicyError`` (the gate fails closed) until the files
are fixed — serving the previous bundle would decide under rules no longer on disk.

>>> engine = EmbeddedRegoEngine("policies")  # doctest: +SKIP
>>> [r.allow for r in engine.evaluate({"action": "read", "source": {"tags": []}})]  # doctest: +SKIP
[True, True, True, True]
"""

from __future__ import annotations

import _thread
import ctypes
import hashlib
import itertools
import logging
import re
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import orjson

from lacuna_orchestration.errors import PolicyError
from lacuna_orchestration.policy.engine import (
    ENTRYPOINT,
    PolicyEngine,
    PolicyResult,
    register_engine,
    results_from_document,
)

if TYPE_CHECKING:
    from lacuna_orchestration.settings import Settings

__all__ = ["EmbeddedRegoEngine", "Mode", "RegoBundle", "load_bundle", "run_rego_tests"]

log = logging.getLogger(__name__)

Mode = Literal["auto", "vm", "interpreter"]
_UNDEFINED = "<undefined>"  # what regorus' JSON output holds for an undefined value
_POLICY_PACKAGE = "data.lacuna.policies."
_ENTRY_PACKAGE = ENTRYPOINT.rsplit(".", 1)[0]
_FATAL = (KeyboardInterrupt, SystemExit, GeneratorExit)


def _regorus() -> Any:
    try:
        import regorus
    except ImportError as err:  # pragma: no cover - a core dependency, absent only if broken
        raise PolicyError(
            "the embedded policy engine needs the 'gordon-to-regorus' package"
        ) from err
    return regorus


def describe_rego_error(err: BaseException) -> str:
    """regorus reports ``--> file:line:col`` plus a caret diagram (and a Rust backtrace when
    RUST_BACKTRACE is set); keep ``file:line:col: message`` on one line."""
    text = str(err).split("Stack backtrace:", 1)[0]
    where = re.search(r"-->\s*(.+?):(\d+):(\d+)", text)
    what = re.search(r"error:\s*(.+)", text)
    if where and what:
        return f"{where[1]}:{where[2]}:{where[3]}: {what[1].strip()}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


# --------------------------------------------------------------------------- the bundle on disk


def _bundle_files(root: Path) -> list[Path]:
    """``*.rego`` and ``data.json`` files under ``root``, hidden folders skipped, sorted."""
    files = [
        p
        for p in root.rglob("*")
        if p.is_file()
        and (p.suffix == ".rego" or p.name == "data.json")
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    return sorted(files)


def _signature(root: Path) -> tuple[tuple[str, int, int], ...]:
    """Cheap change detector: names, sizes and modification times of the bundle's files."""
    out = []
    for p in _bundle_files(root):
        try:
            st = p.stat()
        except OSError:
            continue  # removed between listing and stat: the next check sees it gone
        out.append((str(p), st.st_size, st.st_mtime_ns))
    return tuple(out)


def _merge(target: dict[str, Any], path: list[str], value: Any, origin: Path) -> None:
    node = target
    for key in path:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise PolicyError(
                f"cannot load policy data {origin}: {'.'.join(path)} is not an object"
            )
    if not isinstance(value, dict):
        raise PolicyError(f"cannot load policy data {origin}: the document must be a JSON object")
    for key, item in value.items():
        if key in node:
            raise PolicyError(f"cannot load policy data {origin}: {key!r} is defined twice")
        node[key] = item


@dataclass(frozen=True, slots=True)
class RegoBundle:
    """A policy folder read into memory: what every engine instance compiles from."""

    root: Path
    modules: tuple[tuple[str, str], ...]  # (path, text) of policies, tests excluded
    test_modules: tuple[tuple[str, str], ...]
    data: dict[str, Any] = field(hash=False, compare=False)
    data_json: str = ""
    revision: str = ""

    @property
    def config(self) -> Mapping[str, Any]:
        value = self.data.get("lacuna", {}).get("config", {})
        return value if isinstance(value, dict) else {}


def load_bundle(policy_dir: str | Path) -> RegoBundle:
    """Read a policy folder (OPA layout: a ``data.json`` lands at its folder's path).

    The revision is the SHA-256 of every file's relative path and bytes, tests included.
    """
    root = Path(policy_dir)
    if not root.is_dir():
        raise PolicyError(f"policy folder {root} does not exist or is not a folder")
    digest = hashlib.sha256()
    modules: list[tuple[str, str]] = []
    tests: list[tuple[str, str]] = []
    data: dict[str, Any] = {}
    for path in _bundle_files(root):
        rel = path.relative_to(root)
        try:
            raw = path.read_bytes()
        except OSError as err:
            raise PolicyError(f"cannot read policy file {path}: {err.strerror}") from None
        digest.update(str(rel).encode() + b"\0" + raw + b"\0")
        if path.suffix == ".rego":
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise PolicyError(f"policy file {path} is not UTF-8 text") from None
            (tests if path.name.endswith("_test.rego") else modules).append((str(path), text))
        else:
            try:
                document = orjson.loads(raw)
            except orjson.JSONDecodeError as err:
                raise PolicyError(f"cannot load policy data {path}: {err}") from None
            _merge(data, list(rel.parent.parts), document, path)
    if not modules:
        raise PolicyError(f"policy folder {root} holds no .rego policy files")
    return RegoBundle(
        root=root,
        modules=tuple(modules),
        test_modules=tuple(tests),
        data=data,
        data_json=orjson.dumps(data).decode(),
        revision=digest.hexdigest(),
    )


# --------------------------------------------------------------------------- compiling


def _interpreter(bundle: RegoBundle, *, with_tests: bool = False) -> Any:
    engine = _regorus().Engine()
    modules = bundle.modules + (bundle.test_modules if with_tests else ())
    for path, text in modules:
        try:
            engine.add_policy(path, text)
        except RuntimeError as err:  # regorus reports every load error as RuntimeError
            raise PolicyError(f"cannot load policy {describe_rego_error(err)}") from None
    try:
        engine.add_data_json(bundle.data_json)
    except RuntimeError as err:
        raise PolicyError(f"cannot load policy data: {describe_rego_error(err)}") from None
    return engine


def _check_packages(bundle: RegoBundle, packages: Iterable[str]) -> None:
    """The entry point must exist, and no policy package may be left out of the bundle's
    enabled/disabled lists (a forgotten policy would never be evaluated)."""
    packages = set(packages)
    if _ENTRY_PACKAGE not in packages:
        raise PolicyError(f"no policy in {bundle.root} declares package {_ENTRY_PACKAGE[5:]}")
    config = bundle.config
    enabled = config.get("enabled_policies")
    if enabled is None:
        return  # a bundle with its own entry point and no such lists
    listed = set(enabled) | set(config.get("disabled_policies", ()))
    names = {
        p[len(_POLICY_PACKAGE) :].split(".", 1)[0]
        for p in packages
        if p.startswith(_POLICY_PACKAGE)
    }
    forgotten = sorted(names - listed)
    if forgotten:
        raise PolicyError(
            f"policy package(s) {', '.join(forgotten)} in {bundle.root} are in neither "
            "enabled_policies nor disabled_policies of data.lacuna.config"
        )


@dataclass(frozen=True, slots=True)
class _Compiled:
    """One generation of the bundle, shared by all threads (bytes and strings only)."""

    bundle: RegoBundle
    generation: int
    program: bytes | None  # serialized VM program; None = interpreter only


def _compile(bundle: RegoBundle, mode: Mode, generation: int) -> _Compiled:
    interpreter = _interpreter(bundle)  # precise file:line errors for syntax mistakes
    _check_packages(bundle, interpreter.get_packages())
    if mode == "interpreter":
        return _Compiled(bundle, generation, None)
    regorus = _regorus()
    try:
        program = regorus.Program.compile_from_modules(
            bundle.data_json, list(bundle.modules), [ENTRYPOINT]
        )
        return _Compiled(bundle, generation, bytes(program.serialize_binary()))
    except RuntimeError as err:
        reason = describe_rego_error(err)
        if mode == "vm":
            raise PolicyError(f"cannot compile policies in {bundle.root}: {reason}") from None
    # auto: the interpreter may still run what the VM cannot compile; if it cannot either,
    # the VM's message (it names the file and line) is the better one.
    try:
        interpreter.set_input_json("{}")
        interpreter.eval_rule(ENTRYPOINT)
    except RuntimeError:
        raise PolicyError(f"cannot compile policies in {bundle.root}: {reason}") from None
    log.warning("regorus VM cannot compile %s (%s); using the interpreter", bundle.root, reason)
    return _Compiled(bundle, generation, None)


# --------------------------------------------------------------------------- per-thread runners


class _VmRunner:
    def __init__(self, compiled: _Compiled) -> None:
        regorus = _regorus()
        program = regorus.Program.deserialize_binary(compiled.program)
        if isinstance(program, tuple):  # (program, needs_recompile) in regorus 0.13
            program = program[0]
        self._vm = regorus.Rvm()
        self._vm.load_program(program)
        self._vm.set_data_json(compiled.bundle.data_json)

    def run(self, input_json: str) -> str:
        vm = self._vm
        vm.set_input_json(input_json)
        result: str = vm.execute_entry_point(ENTRYPOINT)
        return result


class _InterpreterRunner:
    def __init__(self, compiled: _Compiled) -> None:
        self._engine = _interpreter(compiled.bundle)

    def run(self, input_json: str) -> str:
        self._engine.set_input_json(input_json)
        result: str = self._engine.eval_rule_as_json(ENTRYPOINT)
        return result


class _ThreadState:
    __slots__ = ("calls", "generation", "interpreter", "vm")

    def __init__(self, compiled: _Compiled) -> None:
        self.generation = compiled.generation
        self.vm = _VmRunner(compiled) if compiled.program is not None else None
        self.interpreter: _InterpreterRunner | None = None
        self.calls = 0


# Each thread's VMs and interpreters live in that thread's own storage, keyed by engine, not
# in a ``threading.local`` of the engine: when an engine is garbage collected, its
# ``threading.local`` drops every thread's objects on the collecting thread, and regorus'
# objects may only be dropped on the thread that made them (pyo3 reports "Rvm is unsendable,
# but is being dropped on another thread"). Here a dead engine's objects are dropped by their
# own thread: at once for the thread that releases the engine, at the next miss for the
# others, and with the thread's storage when the thread ends.
_THREAD = threading.local()
_ENGINE_TOKENS = itertools.count(1)
_RETIRED: set[int] = set()  # tokens of engines that are gone (an int each, never reused)
# At interpreter exit the main thread clears the storage of threads still running (a server's
# daemon workers), which would drop their objects there. Those are moved here instead, a list
# that is never released: the process is ending, and a leak is harmless where a panic is not.
_ATTIC: list[dict[int, _ThreadState]] = []
ctypes.pythonapi.Py_IncRef(ctypes.py_object(_ATTIC))


class _ThreadStates(dict[int, "_ThreadState"]):
    """One thread's VMs and interpreters by engine token; freed on any other thread (only at
    interpreter exit), it keeps them in the attic rather than drop them there."""

    __slots__ = ("_attic", "_ident", "_owner")

    def __init__(self) -> None:
        super().__init__()
        # Bound now: module globals may already be gone when this is freed at exit.
        self._ident = _thread.get_ident
        self._owner = self._ident()
        self._attic = _ATTIC

    def __del__(self) -> None:
        if self and self._ident() != self._owner:
            self._attic.append(dict(self))


def _thread_states() -> dict[int, _ThreadState]:
    states: dict[int, _ThreadState] | None = getattr(_THREAD, "states", None)
    if states is None:
        states = _THREAD.states = _ThreadStates()
    return states


def _retire(token: int) -> None:
    """An engine is gone: drop the calling thread's objects of it now; other threads drop
    theirs on their next miss (``_drop_retired``)."""
    _RETIRED.add(token)
    _thread_states().pop(token, None)


def _drop_retired(states: dict[int, _ThreadState]) -> None:
    # Over a copy of the keys, popping: a collection during the loop may retire (and pop)
    # another engine of this thread.
    for token in list(states):
        if token in _RETIRED:
            states.pop(token, None)


def _parse(output: str) -> Any:
    value = orjson.loads(output)
    if value == _UNDEFINED:
        raise PolicyError(f"{ENTRYPOINT} is undefined for this input")
    return value


class _AnswerCache:
    """The VM's answer text → its validated ``PolicyResult``s, for answers seen before.

    Decoding the answer (~1-2 KB of pretty-printed JSON) and validating it costs about as much
    as a tenth of the evaluation, and the same few answers come back all day (the same kinds
    of operation meet the same policies). The key is the exact text, so a hit returns exactly
    what decoding it would: no invalidation is needed when the bundle changes (a changed
    policy answers a different text; the revision is recorded apart). Only answers that
    validated are stored, never an undefined one. Bounded: cleared when full. Shared by the
    engine's threads: ``dict.get`` and item assignment are atomic under the GIL.
    """

    __slots__ = ("_entries", "_limit")

    def __init__(self, limit: int = 1024) -> None:
        self._entries: dict[str, tuple[PolicyResult, ...]] = {}
        self._limit = limit

    def get(self, text: str) -> tuple[PolicyResult, ...] | None:
        return self._entries.get(text)

    def remember(self, text: str, document: Any) -> tuple[PolicyResult, ...]:
        """Validate ``document`` (decoded from ``text``); raise ``PolicyError`` as
        ``results_from_document`` does, else store and return its results."""
        results = tuple(results_from_document(document))
        if len(self._entries) >= self._limit:
            self._entries.clear()
        self._entries[text] = results
        return results

    def __len__(self) -> int:
        return len(self._entries)


# --------------------------------------------------------------------------- the engine


@register_engine("embedded")
class EmbeddedRegoEngine(PolicyEngine):
    """Evaluates ``policies/*.rego`` in process with regorus; see the module docstring.

    ``reload_interval_s``: how often (at most) an evaluation checks the files for changes;
    ``None`` disables automatic reloads, ``0`` checks on every evaluation.
    ``shadow_every``: every n-th evaluation per thread is re-checked on the interpreter
    (``0`` disables the check).
    """

    def __init__(
        self,
        policy_dir: str | Path,
        *,
        mode: Mode = "auto",
        reload_interval_s: float | None = 2.0,
        shadow_every: int = 1000,
    ) -> None:
        if mode not in ("auto", "vm", "interpreter"):
            raise PolicyError(f"unknown embedded engine mode {mode!r}; use auto, vm or interpreter")
        self._root = Path(policy_dir)
        self._mode: Mode = mode
        self._interval = reload_interval_s
        self._shadow_every = max(0, int(shadow_every))
        self._lock = threading.Lock()
        self._token = next(_ENGINE_TOKENS)  # this engine's key in each thread's states
        self._generation = 0
        self._closed = False
        self._failure: PolicyError | None = None
        self._vm_distrusted = -1  # generation in which VM and interpreter disagreed
        self._answers = _AnswerCache()
        self._signature = _signature(self._root)
        self._compiled = self._build()
        self._revision = self._compiled.bundle.revision
        self._next_check = time.monotonic() + (reload_interval_s or 0.0)
        weakref.finalize(self, _retire, self._token)

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbeddedRegoEngine:
        return cls(settings.policy_dir)

    # -- loading

    def _build(self) -> _Compiled:
        bundle = load_bundle(self._root)
        self._generation += 1
        return _compile(bundle, self._mode, self._generation)

    def reload(self) -> None:
        """Re-read and recompile the folder now; raise ``PolicyError`` if it no longer loads
        (and keep failing evaluations closed until it does)."""
        with self._lock:
            self._reload_locked(_signature(self._root))
        if self._failure is not None:
            raise self._failure

    def _reload_locked(self, signature: tuple[tuple[str, int, int], ...]) -> None:
        self._signature = signature
        try:
            compiled = self._build()
        except PolicyError as err:
            self._failure = err
            self._revision = _revision_of_failed(self._root, self._revision)
            log.error("policy bundle %s no longer loads, failing closed: %s", self._root, err)
            return
        if self._failure is None and compiled.bundle.revision == self._revision:
            return  # touched, not changed
        self._compiled = compiled
        self._revision = compiled.bundle.revision
        self._failure = None
        log.info("policy bundle %s reloaded, revision %s", self._root, self._revision[:12])

    def _maybe_reload(self) -> None:
        if self._interval is None:
            return
        now = time.monotonic()
        if now < self._next_check or not self._lock.acquire(blocking=False):
            return
        try:
            self._next_check = now + self._interval
            signature = _signature(self._root)
            if signature != self._signature:
                self._reload_locked(signature)
        finally:
            self._lock.release()

    @property
    def revision(self) -> str:
        return self._revision

    @property
    def mode(self) -> Literal["vm", "interpreter"]:
        """Which evaluator answers now."""
        compiled = self._compiled
        if compiled.program is None or self._vm_distrusted == compiled.generation:
            return "interpreter"
        return "vm"

    @property
    def policy_dir(self) -> Path:
        return self._root

    # -- evaluating

    def evaluate(self, input_doc: Mapping[str, Any]) -> list[PolicyResult]:
        return list(self._evaluate(input_doc, as_results=True))

    def evaluate_document(self, input_doc: Mapping[str, Any]) -> Any:
        """The entry point's raw value (what OPA's Data API would return as ``result``)."""
        return self._evaluate(input_doc, as_results=False)

    def _evaluate(self, input_doc: Mapping[str, Any], *, as_results: bool) -> Any:
        if self._closed:
            raise PolicyError("the policy engine is closed")
        self._maybe_reload()
        if self._failure is not None:
            raise self._failure
        try:
            input_json = orjson.dumps(input_doc).decode()
        except TypeError as err:
            raise PolicyError(f"policy input is not JSON-serialisable: {err}") from None
        compiled = self._compiled
        try:
            return self._run(compiled, input_json, as_results)
        except PolicyError:
            raise
        except BaseException as err:
            # pyo3 panics derive from BaseException; only the interpreter's own exits pass.
            if isinstance(err, _FATAL):
                raise
            raise PolicyError(f"policy evaluation failed: {describe_rego_error(err)}") from err

    def _state(self, compiled: _Compiled) -> _ThreadState:
        states = _thread_states()
        state = states.get(self._token)
        if state is None or state.generation != compiled.generation:
            if state is None and _RETIRED:
                _drop_retired(states)
            state = states[self._token] = _ThreadState(compiled)
        return state

    def _interpret(self, compiled: _Compiled, state: _ThreadState, input_json: str) -> Any:
        if state.interpreter is None:
            state.interpreter = _InterpreterRunner(compiled)
        return _parse(state.interpreter.run(input_json))

    def _run(self, compiled: _Compiled, input_json: str, as_results: bool) -> Any:
        """The entry point's value, or its validated results when ``as_results``."""
        state = self._state(compiled)
        if state.vm is None or self._vm_distrusted == compiled.generation:
            value = self._interpret(compiled, state, input_json)
            return results_from_document(value) if as_results else value
        text = state.vm.run(input_json)
        state.calls += 1
        sampled = self._shadow_every and state.calls % self._shadow_every == 0
        if as_results and not sampled:
            known = self._answers.get(text)
            if known is not None:
                return known
        value = orjson.loads(text)
        # An undefined answer is already a failure, so it is always double-checked; answers
        # are sampled. The interpreter is the reference either way.
        undefined = value == _UNDEFINED
        if not undefined and not sampled:
            return self._answers.remember(text, value) if as_results else value
        try:
            reference = self._interpret(compiled, state, input_json)
        except PolicyError:
            if not undefined:
                self._distrust(compiled, input_json, "the interpreter fails where the VM answers")
            raise
        except RuntimeError as err:
            self._distrust(compiled, input_json, "the interpreter fails where the VM answers")
            raise PolicyError(f"policy evaluation failed: {describe_rego_error(err)}") from err
        if reference != value:
            self._distrust(compiled, input_json, "their answers differ")
        return results_from_document(reference) if as_results else reference

    def _distrust(self, compiled: _Compiled, input_json: str, why: str) -> None:
        self._vm_distrusted = compiled.generation
        log.error(
            "regorus VM and interpreter disagree on %s (revision %s): %s; using the "
            "interpreter until the bundle changes. input=%s",
            self._root,
            compiled.bundle.revision[:12],
            why,
            input_json[:500],
        )

    def run_rego_tests(self) -> list[tuple[str, bool]]:
        """Run the folder's Rego unit tests as they are on disk now."""
        return run_rego_tests(self._root)

    def release_thread(self) -> None:
        """Drop the calling thread's VM and interpreter, in that thread: for a thread that
        is about to end (regorus objects must be dropped on the thread that made them; left
        to the garbage collector they may be dropped elsewhere, which regorus reports)."""
        _thread_states().pop(self._token, None)

    def close(self) -> None:
        """Refuse further evaluations and drop the calling thread's VM. Other threads' VMs
        are dropped by those threads (regorus objects must die where they were made): when
        the engine is collected, at their next evaluation or when they end."""
        self._closed = True
        self.release_thread()


def _revision_of_failed(root: Path, previous: str) -> str:
    """The hash of what is on disk even when it does not compile, so a fail-closed decision
    records which files it refused to run."""
    try:
        digest = hashlib.sha256()
        for path in _bundle_files(root):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
        return digest.hexdigest()
    except OSError:
        return previous


# --------------------------------------------------------------------------- Rego unit tests


def _package_of(ast: Mapping[str, Any]) -> str:
    parts: list[str] = []
    node: Any = ast["package"]["refr"]
    while True:
        if "RefDot" in node:
            parts.append(str(node["RefDot"]["field"][1]))
            node = node["RefDot"]["refr"]
        elif "Var" in node:
            parts.append(str(node["Var"]["value"]))
            break
        else:
            raise PolicyError(f"unexpected package reference in AST: {node!r:.120}")
    return ".".join(reversed(parts))


def _rule_name(rule: Mapping[str, Any]) -> str | None:
    spec = rule.get("Spec")
    if not isinstance(spec, dict):
        return None  # default rules
    head = next(iter(spec["head"].values()))
    refr = head.get("refr", {})
    var = refr.get("Var")
    return str(var["value"]) if var else None


def run_rego_tests(policy_dir: str | Path) -> list[tuple[str, bool]]:
    """Evaluate every ``test_*`` rule of every ``*_test.rego`` file with the interpreter
    (which supports ``with``). A test passes when it evaluates to ``true``; undefined, false or
    an error fails it. Returns ``(data.<package>.<rule>, passed)`` in file order."""
    bundle = load_bundle(policy_dir)
    engine = _interpreter(bundle, with_tests=True)
    test_paths = {path for path, _ in bundle.test_modules}
    names: list[str] = []
    for module in orjson.loads(engine.get_ast_as_json()):
        if module["source"]["file"] not in test_paths:
            continue
        package = _package_of(module["ast"])
        for rule in module["ast"]["rules"]:
            name = _rule_name(rule)
            qualified = f"data.{package}.{name}"
            if name and name.startswith("test_") and qualified not in names:
                names.append(qualified)
    engine.set_input_json("{}")
    results: list[tuple[str, bool]] = []
    for name in names:
        try:
            passed = engine.eval_rule(name) is True
        except RuntimeError as err:
            log.info("rego test %s raised: %s", name, describe_rego_error(err))
            passed = False
        results.append((name, passed))
    return results
