"""Find the fenced code blocks of a Markdown page and run each one the way a reader would.

Why: documentation that is not executed rots silently — a renamed flag, a moved module, a
setting that no longer validates. Every block of ``docs/*.md`` therefore goes through one of
the runners below, page by page and in order, in a scratch directory laid out like a checkout
of the repository (copies of ``policies/``, ``example_project/``, ``dbt_macros/`` and the
test LLM server, ``.venv`` linked to this venv), with a
SQLite store of its own (``LACUNA_DATABASE_URL``) and ``lacuna`` on ``PATH`` from this venv.

What each language means:

==================  =========================================================================
``python``          executed in one namespace per page, blocks in order (fresh per page)
``bash`` ``sh``     run by ``bash -eu -o pipefail``; must exit 0 (or the ``exit`` directive)
``console``         ``$ command`` lines run in order; every other non-blank line is expected
                    output and must appear in what the commands printed (a ``...`` line
                    stands for lines left out, ``...`` inside a line for any text)
``yaml`` ``json``   parsed; a Lacuna settings file (named by a ``file`` directive or by a
                    ``# lacuna.yaml`` first line; written there) goes through
                    ``Settings.load`` / ``ServerSettings.load``, policy
                    data (``{"lacuna": {"config": ...}}``) is merged over the shipped
                    ``data.json`` and the bundle compiled and evaluated, an OpenLineage event
                    goes through ``parse_event``, a policy input document is compared key by
                    key with what ``build_input`` produces
``rego``            compiled by the embedded engine (regorus)
``text`` or none    an illustration (diagram, sample output): not executed, counted
==================  =========================================================================

Directives are HTML comments on the lines right before a fence (invisible when rendered,
visible in the source, one per line)::

    <!-- docs-test: skip <why> -->        not run; counted and reported with the reason
    <!-- docs-test: file <path> -->       write the block to <path> (relative) first
    <!-- docs-test: exit <n> -->          the block (last command) must exit with <n>
    <!-- docs-test: background <url> -->  start the block, wait until <url> answers, stop it
                                          when the page ends; the URL's port is replaced by
                                          a free one in this and every later block
    <!-- docs-test: slow -->              the block takes seconds: its page test is marked slow
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
VENV_BIN = Path(sys.executable).parent
COPIED = ("policies", "example_project", "dbt_macros", "tests/classify/llm_server.py")
IGNORED_COPIES = shutil.ignore_patterns(
    "out", "target", "logs", "dbt_packages", "__pycache__", "*.duckdb", "*.duckdb.wal"
)
EXECUTED_LANGS = frozenset({"python", "bash", "sh", "console", "yaml", "yml", "json", "rego"})
TEXT_LANGS = frozenset({"", "text"})
DIRECTIVE = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<name>[a-z-]+)\s*(?P<arg>.*?)\s*-->\s*$")
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)[^`]*$")
BLOCK_TIMEOUT_S = 180
REPORTS: list[str] = []
"""One line per page run in this session (``PageReport.line``), for the terminal summary."""
SERVER_WAIT_S = 45


class DocsError(Exception):
    """A page that cannot be read as blocks (bad fence, unknown directive, unknown language)."""


@dataclass(frozen=True)
class Block:
    page: str
    index: int  # 1-based position among the page's fenced blocks
    line: int  # line of the opening fence
    lang: str
    text: str
    directives: Mapping[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line} (block {self.index}, {self.lang or 'text'})"

    @property
    def skip_reason(self) -> str | None:
        return self.directives.get("skip")


@dataclass
class PageReport:
    """What running one page did: counted per kind of outcome."""

    page: str
    executed: int = 0
    skipped: list[str] = field(default_factory=list)  # "line N: reason"
    illustrations: int = 0

    def line(self) -> str:
        skipped = f"{len(self.skipped)} skipped" + (
            f" ({'; '.join(self.skipped)})" if self.skipped else "")
        return (f"{self.page}: {self.executed} executed, {skipped}, "
                f"{self.illustrations} illustration(s) not executed")


KNOWN_DIRECTIVES = frozenset({"skip", "file", "exit", "background", "slow"})


def parse_blocks(text: str, page: str) -> list[Block]:
    """Every fenced block of ``text`` with the directives on the lines just before it."""
    lines = text.splitlines()
    blocks: list[Block] = []
    pending: dict[str, str] = {}
    i = 0
    while i < len(lines):
        line = lines[i]
        directive = DIRECTIVE.match(line)
        if directive:
            name, arg = directive["name"], directive["arg"]
            if name not in KNOWN_DIRECTIVES:
                raise DocsError(f"{page}:{i + 1}: unknown docs-test directive {name!r}")
            if name == "skip" and not arg:
                raise DocsError(f"{page}:{i + 1}: a skip needs a reason")
            pending[name] = arg
            i += 1
            continue
        opening = FENCE.match(line)
        if not opening:
            if line.strip() and pending:
                raise DocsError(f"{page}:{i + 1}: docs-test directive not followed by a block")
            i += 1
            continue
        indent, fence, lang = len(opening["indent"]), opening["fence"], opening["lang"].lower()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not is_closing(lines[j], fence):
            body.append(dedent(lines[j], indent))
            j += 1
        if j >= len(lines):
            raise DocsError(f"{page}:{i + 1}: code fence never closed")
        if lang not in EXECUTED_LANGS | TEXT_LANGS:
            raise DocsError(
                f"{page}:{i + 1}: no runner for ```{lang} blocks; use a supported language "
                f"({', '.join(sorted(EXECUTED_LANGS))}), ```text, or a skip directive")
        blocks.append(Block(page, len(blocks) + 1, i + 1, lang, "\n".join(body) + "\n",
                            dict(pending)))
        pending = {}
        i = j + 1
    if pending:
        raise DocsError(f"{page}: docs-test directive at the end of the page, before no block")
    return blocks


def is_closing(line: str, fence: str) -> bool:
    """A closing fence: only the opening's character, at least as many (CommonMark)."""
    stripped = line.strip()
    return bool(stripped) and set(stripped) == {fence[0]} and len(stripped) >= len(fence)


def dedent(line: str, indent: int) -> str:
    """Remove the opening fence's indentation (blocks inside list items)."""
    head = line[:indent]
    return line[indent:] if head.isspace() or not head else line.lstrip()


def doc_pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


# ------------------------------------------------------------------------------ the workspace


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare_workspace(workdir: Path) -> dict[str, str]:
    """Lay ``workdir`` out like a checkout and return the environment blocks run with."""
    for name in COPIED:
        source, target = ROOT / name, workdir / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=IGNORED_COPIES)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (workdir / ".venv").symlink_to(VENV_BIN.parent, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LACUNA_", "AIRFLOW"))}
    env.update({
        "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        "VIRTUAL_ENV": str(VENV_BIN.parent),
        "LACUNA_DATABASE_URL": f"sqlite:///{workdir / 'lacuna.db'}",
        "LACUNA_SHOP_DUCKDB": str(workdir / "shop.duckdb"),
        "HF_HUB_OFFLINE": "1",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "COLUMNS": "200",
        "NO_COLOR": "1",
        "PYTHONUNBUFFERED": "1",
    })
    return env


@contextlib.contextmanager
def process_state(workdir: Path, env: Mapping[str, str]) -> Iterator[None]:
    """Run Python blocks in this process as if started from ``workdir`` with ``env``; restore
    the working directory, the environment and ``sys.path`` afterwards."""
    old_cwd, old_env, old_path = Path.cwd(), dict(os.environ), list(sys.path)
    os.chdir(workdir)
    os.environ.clear()
    os.environ.update(env)
    sys.path.insert(0, str(workdir))
    try:
        yield
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)
        sys.path[:] = old_path


# ------------------------------------------------------------------------------ the runners


class PageRunner:
    """Runs one page's blocks in order in ``workdir``; raises ``AssertionError`` naming the
    block on the first failure."""

    def __init__(self, page: str, workdir: Path) -> None:
        self.page = page
        self.workdir = workdir
        self.env = prepare_workspace(workdir)
        self.namespace: dict[str, Any] = {"__name__": "__docs__"}
        self.substitutions: dict[str, str] = {}
        self.background: list[tuple[Block, subprocess.Popen[bytes], Path]] = []
        self.report = PageReport(page)

    # -- driving ------------------------------------------------------------------------------
    def run(self, blocks: list[Block]) -> PageReport:
        try:
            for block in blocks:
                self.run_block(block)
        finally:
            self.stop_background()
        return self.report

    def run_block(self, block: Block) -> None:
        if block.skip_reason is not None:
            self.report.skipped.append(f"line {block.line}: {block.skip_reason}")
            return
        if block.lang in TEXT_LANGS:
            self.report.illustrations += 1
            return
        text = self.substitute(block.text)
        if "file" in block.directives:
            self.write_file(block, text)
        try:
            getattr(self, f"run_{block.lang.replace('yml', 'yaml')}")(block, text)
        except AssertionError:
            raise
        except Exception as err:  # noqa: BLE001 - any error of a block is the block's failure
            raise AssertionError(f"{block.where} failed: {type(err).__name__}: {err}\n"
                                 f"{traceback.format_exc(limit=-3)}\n--- block ---\n{text}")
        self.report.executed += 1

    def substitute(self, text: str) -> str:
        for old, new in self.substitutions.items():
            text = text.replace(old, new)
        return text

    def write_file(self, block: Block, text: str) -> Path:
        path = (self.workdir / block.directives["file"]).resolve()
        assert path.is_relative_to(self.workdir.resolve()), f"{block.where}: file outside"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    # -- python -------------------------------------------------------------------------------
    def run_python(self, block: Block, text: str) -> None:
        code = compile(text, f"<{block.where}>", "exec")
        out = io.StringIO()
        with process_state(self.workdir, self.env), contextlib.redirect_stdout(out):
            try:
                exec(code, self.namespace)  # noqa: S102 - running the documentation is the point
            except (Exception, SystemExit) as err:  # noqa: BLE001 - the block failed, say how
                if isinstance(err, SystemExit) and not err.code:
                    return
                raise AssertionError(
                    f"{block.where} raised {type(err).__name__}: {err}\n"
                    f"{traceback.format_exc(limit=-4)}--- printed ---\n{out.getvalue()[-3000:]}"
                    f"--- block ---\n{text}") from None

    # -- shells -------------------------------------------------------------------------------
    def shell(self, script: str, timeout: float = BLOCK_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-eu", "-o", "pipefail", "-c", script], cwd=self.workdir, env=self.env,
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
            check=False,
        )

    def expected_exit(self, block: Block) -> int:
        return int(block.directives.get("exit", "0"))

    def run_bash(self, block: Block, text: str) -> None:
        if "background" in block.directives:
            self.start_background(block, text)
            return
        proc = self.shell(text)
        want = self.expected_exit(block)
        assert proc.returncode == want, (
            f"{block.where} exited {proc.returncode}, expected {want}\n--- block ---\n{text}"
            f"--- stdout ---\n{proc.stdout[-4000:]}--- stderr ---\n{proc.stderr[-4000:]}")

    run_sh = run_bash

    def run_console(self, block: Block, text: str) -> None:
        commands, expected = console_parts(text)
        assert commands, f"{block.where}: a console block needs '$ command' lines"
        printed = []
        for n, command in enumerate(commands, 1):
            proc = self.shell(command)
            printed.append(proc.stdout + proc.stderr)
            want = self.expected_exit(block) if n == len(commands) else 0
            assert proc.returncode == want, (
                f"{block.where}: `{command}` exited {proc.returncode}, expected {want}\n"
                f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
        actual = squash("\n".join(printed))
        for line in expected:
            assert output_matches(line, actual), (
                f"{block.where}: expected output line not printed: {line!r}\n"
                f"--- printed ---\n{''.join(printed)[-4000:]}")

    # -- background servers -------------------------------------------------------------------
    def start_background(self, block: Block, text: str) -> None:
        url = block.directives["background"]
        port = re.search(r":(\d{2,5})(?=/|$)", url)
        assert port, f"{block.where}: the background URL needs an explicit port"
        fresh = str(free_port())
        self.substitutions[f":{port[1]}"] = f":{fresh}"
        self.substitutions[f"--port {port[1]}"] = f"--port {fresh}"
        text, url = self.substitute(block.text), self.substitute(url)
        log = self.workdir / f"background-{block.index}.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                ["bash", "-eu", "-c", text], cwd=self.workdir, env=self.env, stdout=sink,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self.background.append((block, proc, log))
        deadline = time.monotonic() + SERVER_WAIT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"{block.where} exited {proc.returncode} before {url} "
                                     f"answered:\n{log.read_text()[-4000:]}")
            if answers(url):
                return
            time.sleep(0.2)
        raise AssertionError(f"{block.where}: {url} did not answer in {SERVER_WAIT_S} s:\n"
                             f"{log.read_text()[-4000:]}")

    def stop_background(self) -> None:
        for block, proc, log in reversed(self.background):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
                    raise AssertionError(f"{block.where} did not stop on SIGTERM:\n"
                                         f"{log.read_text()[-2000:]}") from None
        self.background.clear()

    # -- data ---------------------------------------------------------------------------------
    def run_yaml(self, block: Block, text: str) -> None:
        documents = list(yaml.safe_load_all(text))
        target = settings_file_name(block, text)
        if target is None:
            return
        path = self.workdir / (block.directives.get("file") or target)
        if "file" not in block.directives:  # named by its first line: the reader's file
            path.write_text(text, encoding="utf-8")
        assert len(documents) == 1, f"{block.where}: a settings file holds one document"
        load_settings(path, server=target == "lacuna-server.yaml", env=self.env,
                      workdir=self.workdir)

    def run_json(self, block: Block, text: str) -> None:
        value = json.loads(text)
        if not isinstance(value, dict):
            return
        if isinstance(value.get("lacuna"), dict) and "config" in value["lacuna"]:
            check_policy_data(value, self.workdir / f".docs-policies-{block.index}")
        elif "eventType" in value:
            from lacuna_orchestration.lineage.openlineage import parse_event

            parse_event(value)
        elif set(value) == set(sample_input_document()):
            compare_shapes(value, sample_input_document(), "input")

    def run_rego(self, block: Block, text: str) -> None:
        import regorus

        from lacuna_orchestration.policy.rego import describe_rego_error

        engine = regorus.Engine()
        try:
            engine.add_policy(f"{self.page}-block-{block.index}.rego", text)
        except RuntimeError as err:
            raise AssertionError(f"{block.where} does not compile: "
                                 f"{describe_rego_error(err)}\n--- block ---\n{text}") from None


# ------------------------------------------------------------------------------ helpers


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means the server is up
    except (OSError, ValueError):
        return False


def squash(text: str) -> str:
    return " ".join(text.split())


def output_matches(expected_line: str, actual: str) -> bool:
    """The line occurs in the output (whitespace runs compared as one space); ``...`` inside
    a line stands for any text (a count, a hash)."""
    parts = [re.escape(squash(p)) for p in expected_line.split("...")]
    return re.search(r".*?".join(parts), actual) is not None


def console_parts(text: str) -> tuple[list[str], list[str]]:
    """``$ command`` lines (with ``\\`` continuations) and the expected output lines."""
    commands: list[str] = []
    expected: list[str] = []
    continuing = False
    for line in text.splitlines():
        if continuing:
            commands[-1] += "\n" + line
            continuing = line.rstrip().endswith("\\")
        elif line.startswith("$ "):
            commands.append(line[2:])
            continuing = line.rstrip().endswith("\\")
        elif line.strip() and line.strip() != "...":
            expected.append(line)
    return commands, expected


def settings_file_name(block: Block, text: str) -> str | None:
    """``lacuna.yaml`` / ``lacuna-server.yaml`` when the block is one (by its ``file``
    directive or a first-line comment naming the file), else ``None``."""
    named = Path(block.directives.get("file", "")).name
    first = text.lstrip().splitlines()[0] if text.strip() else ""
    comment = re.match(r"#\s*(\S+\.ya?ml)\b", first)
    for candidate in (named, comment[1] if comment else ""):
        if candidate in ("lacuna.yaml", "lacuna-server.yaml"):
            return candidate
    return None


def load_settings(path: Path, *, server: bool, env: Mapping[str, str], workdir: Path) -> Any:
    from lacuna_orchestration.server.config import ServerSettings
    from lacuna_orchestration.settings import Settings

    with process_state(workdir, env):
        if server:
            return ServerSettings.load(path, core=Settings.load())
        return Settings.load(path)


def deep_merge(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def check_policy_data(overlay: Mapping[str, Any], folder: Path) -> None:
    """Policy data from the docs, merged over the shipped ``data.json``, must load, compile
    and answer the seed export with one result per enabled policy."""
    from lacuna_orchestration.policy.rego import EmbeddedRegoEngine

    shutil.copytree(ROOT / "policies", folder)
    shipped = json.loads((folder / "data.json").read_text(encoding="utf-8"))
    (folder / "data.json").write_text(json.dumps(deep_merge(shipped, overlay)), encoding="utf-8")
    engine = EmbeddedRegoEngine(folder)
    try:
        results = engine.evaluate(sample_input_document())
    finally:
        engine.close()
    enabled = deep_merge(shipped, overlay)["lacuna"]["config"]["enabled_policies"]
    assert [r.policy_id for r in results] and len(results) == len(enabled), results


def sample_input_document() -> dict[str, Any]:
    """What ``build_input`` makes for the seed export (the reference for the documented
    input schema)."""
    from lacuna_orchestration.model import (
        Classification,
        DatasetRef,
        Operation,
        OperationKind,
        Tier,
    )
    from lacuna_orchestration.policy.decide import build_input

    op = Operation(kind=OperationKind.EXPORT, sources=(DatasetRef("file", "analysis.csv"),),
                   destination=DatasetRef("file", "/tmp/export.csv"), user="alice",
                   purpose="analytics", environment="production", code="export_analysis")
    pii = Classification(Tier.PROPRIETARY, frozenset({"PII", "GDPR"}), 0.95)
    return build_input(op, pii, destination_classification=None,
                       upstream=[DatasetRef("file", "customers.csv")])


def compare_shapes(documented: Any, real: Any, where: str) -> None:
    """Same keys at every level of nested objects (values may differ: they are examples)."""
    if isinstance(real, dict):
        assert isinstance(documented, dict), f"{where}: documented {documented!r}, not an object"
        assert set(documented) == set(real), (
            f"{where}: documented keys {sorted(documented)} but build_input makes {sorted(real)}")
        for key, value in real.items():
            if isinstance(value, dict):
                compare_shapes(documented[key], value, f"{where}.{key}")
