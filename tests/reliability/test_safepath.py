"""Path traversal in file arguments is refused: ``safepath`` itself, then the ``lacuna`` CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lacuna_orchestration.errors import LacunaError, ValidationError
from lacuna_orchestration.safepath import read_file, resolve_file

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "example_project" / "openlineage" / "pipeline.ndjson"


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """``project/`` (the allowed root) with a file, a subfolder, and a secret next to it."""
    root = tmp_path / "project"
    (root / "events").mkdir(parents=True)
    (root / "events" / "run.json").write_text('{"ok": true}')
    (tmp_path / "secret.txt").write_text("root:x:0:0")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "shared.json").write_text("{}")
    return root


def test_files_inside_the_root_are_read(project: Path) -> None:
    for arg in ("events/run.json", "./events/../events/run.json",
                str(project / "events" / "run.json")):
        assert read_file(arg, base=project) == b'{"ok": true}'
    assert resolve_file("events/run.json", base=project) == (project / "events/run.json").resolve()


TRAVERSALS = [
    "../secret.txt",
    "events/../../secret.txt",
    "events/../../../../../../etc/passwd",
    "/etc/passwd",
    "//etc//passwd",
    "events/./../../secret.txt",
]


@pytest.mark.parametrize("arg", TRAVERSALS)
def test_traversal_outside_the_root_is_refused(project: Path, arg: str) -> None:
    with pytest.raises(ValidationError, match="path traversal refused"):
        read_file(arg, base=project)


def test_symlinks_out_of_the_root_are_refused(project: Path, tmp_path: Path) -> None:
    (project / "innocent.json").symlink_to(tmp_path / "secret.txt")
    (project / "linked_dir").symlink_to(tmp_path / "other")
    (project / "inner.json").symlink_to(project / "events" / "run.json")
    with pytest.raises(ValidationError, match="path traversal refused"):
        read_file("innocent.json", base=project)
    with pytest.raises(ValidationError, match="path traversal refused"):
        read_file("linked_dir/shared.json", base=project)
    assert read_file("inner.json", base=project) == b'{"ok": true}'  # a link that stays inside


def test_extra_roots_allow_exactly_themselves(project: Path, tmp_path: Path) -> None:
    roots = [project, tmp_path / "other"]
    assert read_file(str(tmp_path / "other" / "shared.json"), roots=roots, base=project) == b"{}"
    with pytest.raises(ValidationError, match="path traversal refused"):
        read_file("../secret.txt", roots=roots, base=project)
    with pytest.raises(ValidationError, match="path traversal refused"):
        read_file("../other/../secret.txt", roots=roots, base=project)
    (tmp_path / "other-evil").mkdir()
    (tmp_path / "other-evil" / "x.json").write_text("{}")  # a sibling sharing the prefix
    with pytest.raises(ValidationError, match="path traversal refused"):
        read_file(str(tmp_path / "other-evil" / "x.json"), roots=roots, base=project)


def test_special_files_are_refused_without_hanging(project: Path) -> None:
    os.mkfifo(project / "pipe.json")
    result: list[BaseException] = []

    def attempt() -> None:
        try:
            read_file("pipe.json", base=project)
        except BaseException as err:  # noqa: BLE001 - inspected below
            result.append(err)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(5)
    assert not worker.is_alive(), "reading a FIFO blocked"
    assert isinstance(result[0], ValidationError) and "FIFO" in str(result[0])
    with pytest.raises(ValidationError, match="a directory"):
        read_file("events", base=project)
    with pytest.raises(ValidationError, match="character device"):
        read_file("/dev/zero", roots=["/dev"], base=project)


def test_size_limit(project: Path) -> None:
    (project / "big.json").write_bytes(b"x" * 10_001)
    assert len(read_file("big.json", base=project, max_bytes=10_001)) == 10_001
    with pytest.raises(ValidationError, match="limit is 10,000 bytes"):
        read_file("big.json", base=project, max_bytes=10_000)


@pytest.mark.parametrize(
    ("arg", "needle"),
    [("", "empty file name"), ("events/run.json\x00.txt", "NUL"),
     ("missing.json", "no such file"), ("loop.json", "cannot be resolved")],
)
def test_malformed_names(project: Path, arg: str, needle: str) -> None:
    (project / "loop.json").symlink_to(project / "loop.json")
    with pytest.raises(ValidationError, match=needle) as caught:
        read_file(arg, base=project)
    assert isinstance(caught.value, LacunaError) and "\n" not in str(caught.value)


def test_control_characters_are_escaped_in_messages(project: Path) -> None:
    with pytest.raises(ValidationError) as caught:
        read_file("../\x1b[31mred\x1b[0m\n.json", base=project)
    assert "\x1b" not in str(caught.value) and "\n" not in str(caught.value)
    assert "\\x1b" in str(caught.value)


# -- the CLI ---------------------------------------------------------------------------------


def lacuna(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "LACUNA_FILE_ROOTS"}
    environment.update({"LACUNA_DATABASE_URL": f"sqlite:///{cwd / 'store.db'}",
                        "LACUNA_POLICY_DIR": str(ROOT / "policies"), "COLUMNS": "200"})
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "lacuna_orchestration.cli", *args],
                          capture_output=True, text=True, cwd=cwd, env=environment, timeout=120,
                          check=False)


@pytest.mark.slow
def test_cli_refuses_file_arguments_outside_the_project(project: Path, tmp_path: Path,
                                                        record_result) -> None:
    outside = tmp_path / "other" / "pipeline.ndjson"
    outside.write_bytes(PIPELINE.read_bytes())
    (project / "events" / "link.ndjson").symlink_to(outside)
    refused = 0
    for command in (["ingest", "../other/pipeline.ndjson"], ["ingest", str(outside)],
                    ["ingest", "events/link.ndjson"], ["ingest", "/dev/zero"],
                    ["classify", "--schema", "../secret.txt"]):
        proc = lacuna(project, *command)
        assert proc.returncode == 2, (command, proc.stdout, proc.stderr)
        assert proc.stderr.startswith("lacuna: error:") and "Traceback" not in proc.stderr
        assert "path traversal refused" in proc.stderr
        refused += 1
    assert "0 records" in lacuna(project, "audit", "verify").stdout  # nothing was ingested
    # Inside the project, or from an allowed directory, the same file is read.
    (project / "events" / "pipeline.ndjson").write_bytes(PIPELINE.read_bytes())
    assert lacuna(project, "ingest", "events/pipeline.ndjson").returncode == 0
    allowed = lacuna(project, "--allow-dir", str(tmp_path / "other"), "ingest", str(outside))
    assert allowed.returncode == 0, allowed.stderr
    via_env = lacuna(project, "ingest", str(outside),
                     env={"LACUNA_FILE_ROOTS": str(tmp_path / "other")})
    assert via_env.returncode == 0, via_env.stderr
    record_result("hostile: path traversal in CLI file arguments", refused=refused,
                  allowed_inside_project=True)
