"""LacunaResource configuration, remote mode failing closed, and the package's public surface."""

import socket
import subprocess
import sys

import dagster as dg
import pytest
from dagster_helpers import QUIET, REPO, build_assets, export_path, failure_message

import lacuna_orchestration.integrations.dagster as integration
from lacuna_orchestration.integrations.dagster import LacunaResource, governed_resources


@pytest.mark.parametrize(("fields", "field", "problem"), [
    ({"timeout_s": 0}, "timeout_s", "must be a positive number"),
    ({"url": "ftp://lacuna:8000"}, "url", "must start with http://"),
    ({"url": "http://lacuna:8000", "database_url": "sqlite:///x.db"}, "database_url",
     "in-process mode only"),
    ({"namespace": "  "}, "namespace", "must not be empty"),
    ({"policy_dir": "/nonexistent/policies"}, "policy_dir", "is not a directory"),
    ({"database_url": "lacuna.db"}, "database_url", "must be a SQLAlchemy URL"),
])
def test_misconfiguration_is_a_dagster_config_error_naming_the_field(fields, field, problem):
    with pytest.raises(dg.DagsterInvalidConfigError) as info:
        LacunaResource(**fields)
    assert f"LacunaResource field '{field}'" in str(info.value)
    assert problem in str(info.value)


def test_misconfiguration_at_launch_names_the_field(tmp_path):
    assets = build_assets(export_path(tmp_path))[:1]
    resources = governed_resources(assets, LacunaResource.configure_at_launch(), {
        "io_manager": dg.FilesystemIOManager(base_dir=str(tmp_path / "storage"))})
    with pytest.raises(dg.DagsterInvalidConfigError, match="field 'timeout_s'"):
        dg.materialize(assets, resources=resources, run_config={
            **QUIET, "resources": {"lacuna": {"config": {"timeout_s": -1.0}}}})
    with pytest.raises(dg.DagsterInvalidConfigError, match="timeout_s"):
        dg.materialize(assets, resources=resources, run_config={
            **QUIET, "resources": {"lacuna": {"config": {"timeout_s": "soon"}}}})


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_fails_the_gate_closed_with_the_reason(tmp_path):
    port = _closed_port()
    remote = LacunaResource(url=f"http://127.0.0.1:{port}", timeout_s=1.0,
                            environment="production")
    assets = build_assets(export_path(tmp_path))
    storage = tmp_path / "storage"
    resources = governed_resources(assets, remote, {
        "io_manager": dg.FilesystemIOManager(base_dir=str(storage))})
    result = dg.materialize(assets, resources=resources, raise_on_error=False, run_config=QUIET)
    assert not result.success
    message = failure_message(result, "customers")
    assert "Governance Policy Violation" in message
    assert "fail" in message and "closed" in message
    assert f"127.0.0.1:{port}" in message
    assert not (storage / "customers").exists()
    assert not export_path(tmp_path).exists()


def test_public_surface_imports_every_name_once():
    assert len(integration.__all__) == len(set(integration.__all__))
    for name in integration.__all__:
        assert getattr(integration, name) is not None, name


def test_core_imports_without_dagster():
    code = (
        "import sys; sys.modules['dagster'] = None\n"
        "import lacuna_orchestration, lacuna_orchestration.governor, "
        "lacuna_orchestration.integrations\n"
        "try:\n"
        "    import lacuna_orchestration.integrations.dagster\n"
        "except ImportError:\n"
        "    print('integration needs dagster, core does not')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "core does not" in done.stdout


ADMIN_KEY = "lcn_dagster_tests_bootstrap_admin_0001"


@pytest.fixture()
def lacuna_server(tmp_path):
    """`lacuna serve`'s app on a free port, in a thread, over this test's own store."""
    import threading
    import time

    import uvicorn

    from lacuna_orchestration.server.app import create_app
    from lacuna_orchestration.server.config import ServerSettings
    from lacuna_orchestration.settings import Settings

    core = Settings.load(database_url=f"sqlite:///{tmp_path / 'server.db'}",
                         policy_dir=str(REPO / "policies"), environment="production")
    app = create_app(ServerSettings.load(core=core, bootstrap_admin_key=ADMIN_KEY))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=_closed_port(),
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the Lacuna server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{server.config.port}", core
    server.should_exit = True
    thread.join(timeout=10)


def test_remote_mode_gates_emits_and_checks_through_the_server(tmp_path, lacuna_server):
    from dagster_helpers import check_results, materialized

    from lacuna_orchestration.governor import Governor
    from lacuna_orchestration.integrations.dagster import build_lacuna_checks

    url, core = lacuna_server
    remote = LacunaResource(url=url, api_key=ADMIN_KEY, environment="production")
    assets = build_assets(export_path(tmp_path))
    resources = governed_resources(assets, remote, {
        "io_manager": dg.FilesystemIOManager(base_dir=str(tmp_path / "storage"))})
    result = dg.materialize([*assets, *build_lacuna_checks(assets)], resources=resources,
                            raise_on_error=False, run_config=QUIET)
    md = materialized(result)
    # Tiers come back from the server's catalog after its ingest path classified the events.
    assert md["customer_sales"]["lacuna/tier"] == "PROPRIETARY"
    assert "DERIVED_FROM_PII" in md["regional_summary"]["lacuna/tags"]
    assert check_results(result)["customer_sales"].passed
    assert "Cannot export PII data to unmanaged location" in failure_message(
        result, "regional_report_export")
    assert not export_path(tmp_path).exists()
    with Governor(core) as gov:  # the server's store holds the lineage and the audit
        edges = {(s, d) for s, d, _, _ in gov.graph.edges()}
        assert ("dagster::customers", "dagster::customer_sales") in edges
        assert any(r.action == "gate.check" and not r.decision["allow"]
                   for r in gov.audit.tail(200) if r.decision)
