"""Calling dbt in process: one place for ``dbtRunner``, its arguments and its errors.

Everything else in this package talks to dbt through ``invoke`` (and ``load_target``), so the
dbt API the integration depends on — ``dbt.cli.main.dbtRunner``, ``dbtRunnerResult`` and
``dbt.config.runtime.load_profile`` (dbt-core 1.8 – 1.11) — is named here only. dbt is imported
inside the functions: ``import lacuna_orchestration.integrations.dbt`` works without dbt.

``DbtArgs`` pulls out of a user's dbt argument list the options Lacuna must know too (project
and profiles directories, target, selection, vars) without consuming them: the list goes to
dbt unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lacuna_orchestration.errors import ConfigError, LacunaError

__all__ = ["DbtArgs", "DbtInvocationError", "invoke", "load_target"]

# Options whose value Lacuna reads; each maps to the canonical long name.
_VALUE_OPTIONS = {
    "--project-dir": "project_dir",
    "--profiles-dir": "profiles_dir",
    "--target": "target", "-t": "target",
    "--profile": "profile",
    "--vars": "vars",
    "--target-path": "target_path",
    "--log-path": "log_path",
}
# Selection options passed on to `dbt ls` to learn which nodes a command will build.
_SELECTION_OPTIONS = frozenset({
    "--select", "-s", "--models", "-m", "--exclude", "--selector", "--resource-type",
    "--resource-types", "--exclude-resource-type", "--exclude-resource-types", "--state",
    "--defer-state", "--indirect-selection",
})
_MULTI_VALUE = frozenset({"--select", "-s", "--models", "-m", "--exclude", "--resource-type",
                          "--resource-types", "--exclude-resource-type",
                          "--exclude-resource-types"})
_ANON_FLAG = "--no-send-anonymous-usage-stats"


class DbtInvocationError(LacunaError):
    """dbt could not run the command at all (bad project, profile, arguments)."""


@dataclass(frozen=True, slots=True)
class DbtArgs:
    """What Lacuna needs to know from a dbt argument list."""

    args: tuple[str, ...]
    project_dir: str | None = None
    profiles_dir: str | None = None
    target: str | None = None
    profile: str | None = None
    vars: Mapping[str, Any] = field(default_factory=dict)
    target_path: str | None = None
    selection: tuple[str, ...] = ()

    @classmethod
    def parse(cls, args: Sequence[str]) -> DbtArgs:
        values: dict[str, Any] = {}
        selection: list[str] = []
        items = list(args)
        i = 0
        while i < len(items):
            arg = items[i]
            name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
            if name in _VALUE_OPTIONS:
                value = inline if eq else (items[i + 1] if i + 1 < len(items) else "")
                values[_VALUE_OPTIONS[name]] = value
                i += 1 if eq else 2
                continue
            if name in _SELECTION_OPTIONS:
                selection.append(name)
                if eq:
                    selection.append(inline)
                    i += 1
                    continue
                i += 1
                # multi-value options take every following token up to the next option
                while i < len(items) and not items[i].startswith("-"):
                    selection.append(items[i])
                    i += 1
                    if name not in _MULTI_VALUE:
                        break
                continue
            i += 1
        user_vars: Mapping[str, Any] = {}
        if values.get("vars"):
            try:
                loaded = yaml.safe_load(values["vars"])
            except yaml.YAMLError as err:
                raise ConfigError(f"--vars is not valid YAML: {err}") from None
            if loaded is not None and not isinstance(loaded, Mapping):
                raise ConfigError("--vars must be a YAML mapping")
            user_vars = dict(loaded or {})
        return cls(
            args=tuple(items),
            project_dir=values.get("project_dir"),
            profiles_dir=values.get("profiles_dir"),
            target=values.get("target"),
            profile=values.get("profile"),
            vars=user_vars,
            target_path=values.get("target_path"),
            selection=tuple(selection),
        )

    @property
    def project_path(self) -> Path:
        return Path(self.project_dir or os.environ.get("DBT_PROJECT_DIR") or ".").resolve()

    def target_dir(self) -> Path:
        """The project's artifact folder (``--target-path`` or ``target``)."""
        path = Path(self.target_path or os.environ.get("DBT_TARGET_PATH") or "target")
        return path if path.is_absolute() else self.project_path / path

    def location_args(self) -> list[str]:
        """Project, profiles, profile and target options, for commands Lacuna adds."""
        out = ["--project-dir", str(self.project_path)]
        if self.profiles_dir:
            out += ["--profiles-dir", self.profiles_dir]
        if self.profile:
            out += ["--profile", self.profile]
        if self.target:
            out += ["--target", self.target]
        if self.target_path:
            out += ["--target-path", self.target_path]
        return out

    def without_vars(self) -> list[str]:
        """The arguments with any ``--vars`` removed (Lacuna passes merged vars itself)."""
        out: list[str] = []
        skip = False
        for arg in self.args:
            if skip:
                skip = False
                continue
            if arg == "--vars":
                skip = True
                continue
            if arg.startswith("--vars="):
                continue
            out.append(arg)
        return out


def invoke(
    args: Sequence[str],
    *,
    callbacks: Sequence[Callable[[Any], None]] = (),
    manifest: Any = None,
    quiet: bool = False,
) -> Any:
    """Run one dbt command in process; returns dbt's ``dbtRunnerResult``.

    Raises ``DbtInvocationError`` when dbt could not run the command at all (it returns an
    exception rather than results); a command that ran with failing nodes is *not* an error
    here — callers read ``result.success`` and the node results.
    """
    try:
        from dbt.cli.main import dbtRunner
    except ImportError as err:  # pragma: no cover - the dbt extra is missing
        raise ConfigError("the dbt integration needs dbt-core: pip install "
                          "'lacuna-orchestration[dbt]'") from err
    command = [*args]
    if _ANON_FLAG not in command and "--send-anonymous-usage-stats" not in command:
        command.insert(0, _ANON_FLAG)
    if quiet and "--quiet" not in command and "-q" not in command:
        command.insert(0, "--quiet")
    runner = dbtRunner(manifest=manifest, callbacks=list(callbacks))
    try:
        result = runner.invoke(command)
    except BaseException as err:  # dbt raises for programming errors in callbacks, too
        if isinstance(err, (KeyboardInterrupt, SystemExit)):
            raise
        raise DbtInvocationError(f"dbt {_verb(args)} failed: {_first_line(err)}") from err
    if result.exception is not None and result.result is None:
        raise DbtInvocationError(f"dbt {_verb(args)} failed: {_first_line(result.exception)}")
    return result


def load_target(dbt_args: DbtArgs) -> dict[str, Any]:
    """The profile's target as dbt's Jinja sees it (``target``), for naming datasets exactly as
    the macros do. Call it after a dbt invocation with the same arguments (dbt reads the
    profiles directory from its global flags)."""
    try:
        from dbt.config.runtime import load_profile
    except ImportError as err:  # pragma: no cover
        raise ConfigError("the dbt integration needs dbt-core") from err
    try:
        profile = load_profile(str(dbt_args.project_path), dict(dbt_args.vars),
                               dbt_args.profile, dbt_args.target, None)
    except Exception as err:  # dbt raises many types; one line for the user
        raise DbtInvocationError(f"cannot read the dbt profile: {_first_line(err)}") from err
    return dict(profile.to_target_dict())


def _verb(args: Sequence[str]) -> str:
    return next((a for a in args if not a.startswith("-")), "command")


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return " ".join(lines[:3]) if lines else type(err).__name__
