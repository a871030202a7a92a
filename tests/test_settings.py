"""Settings: the documented order, and one clear line for a bad value."""

from __future__ import annotations

import pytest

from lacuna_orchestration.errors import ConfigError
from lacuna_orchestration.settings import Settings


def test_order_file_env_overrides(tmp_path, monkeypatch) -> None:
    config = tmp_path / "lacuna.yaml"
    config.write_text("tenant: from-file\nenvironment: staging\nnamespace: file-ns\n")
    monkeypatch.setenv("LACUNA_CONFIG", str(config))
    monkeypatch.setenv("LACUNA_ENVIRONMENT", "development")
    s = Settings.load(namespace="kw-ns")
    assert (s.tenant, s.environment, s.namespace) == ("from-file", "development", "kw-ns")


def test_bad_values_name_the_field(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LACUNA_HEURISTIC_THRESHOLD", "2")
    with pytest.raises(ConfigError, match="invalid setting heuristic_threshold"):
        Settings.load()
    monkeypatch.delenv("LACUNA_HEURISTIC_THRESHOLD")
    monkeypatch.setenv("LACUNA_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="LACUNA_CONFIG names"):
        Settings.load()
    broken = tmp_path / "broken.yaml"
    broken.write_text("tenant: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        Settings.load(broken)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("no_such_setting: 1\n")
    with pytest.raises(ConfigError, match="no_such_setting"):
        Settings.load(unknown)
