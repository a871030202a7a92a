"""The Lacuna a Dagster run talks to: the governor in process, or a Lacuna server over HTTP.

Both answer the same questions — ingest an OpenLineage event, decide an operation, say how a
dataset is classified — so the gate, the emitter and the checks never ask which one they have.
Nothing here imports Dagster.

Governors attached with ``attach_governor`` are shared by handle inside this process: Dagster
builds a fresh resource object from config for every run, so a live object cannot travel in
the resource's fields, but a handle can (tests, benchmarks, applications embedding Lacuna).
"""

from __future__ import annotations

import itertools
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from lacuna_orchestration.errors import ConfigError, StoreError
from lacuna_orchestration.lineage.events import waits_for_commit
from lacuna_orchestration.model import Classification, DatasetRef, Decision, Operation

__all__ = ["Backend", "attach_governor", "attached_governor", "detach_governor"]


class Backend:
    """One Lacuna behind the four calls the Dagster integration makes."""

    def __init__(self, target: Any, *, remote: bool, owned: bool, environment: str,
                 user: str, description: str,
                 catalog: RemoteCatalog | None = None) -> None:
        self.target = target
        self.catalog = catalog
        self.remote = remote
        self.owned = owned  # close it when the run ends (not when it was attached)
        self.environment = environment
        self.user = user
        self.description = description

    def ingest(self, event: dict[str, Any], *, via: str) -> Any:
        if self.remote:
            return self.target.ingest(event)
        # In process, a START joins the next group commit without waiting (waits_for_commit);
        # a COMPLETE waits for its commit but not for the disk: the governor's committer
        # syncs it milliseconds later (and before the process exits).
        return self.target.ingest(event, via=via, durable=waits_for_commit(event), synced=False)

    def check(self, operation: Operation, *, via: str, durable: bool = True) -> Decision:
        """The audited decision. In process, ``durable=False`` queues an allowed decision's
        record for the next group commit (the gate of a step whose COMPLETE waits for it);
        a denial always waits for its commit (the step fails next)."""
        if self.remote:
            decision: Decision = self.target.check(operation)
        else:
            decision = self.target.check(operation, via=via, durable=durable)
        return decision

    def classification(self, ref: DatasetRef) -> Classification | None:
        """The dataset's effective classification, or None when Lacuna has not seen it."""
        if self.remote:
            detail = self.catalog.dataset(ref) if self.catalog else None
            if detail is None or not detail.get("classification"):
                return None
            return Classification.from_dict(detail["classification"])
        graph = self.target.graph
        if ref.key not in graph:
            return None
        effective: Classification = graph.node(ref.key).effective
        return effective

    def column_classifications(self, ref: DatasetRef) -> dict[str, Classification]:
        """Per-column classifications Lacuna holds for the dataset (empty when unknown)."""
        if self.remote:
            detail = self.catalog.dataset(ref) if self.catalog else None
            columns = (detail or {}).get("column_classifications") or {}
            return {str(k): Classification.from_dict(v) for k, v in columns.items() if v}
        graph = self.target.graph
        if ref.key not in graph:
            return {}
        return dict(graph.node(ref.key).columns or {})

    def classify_columns(self, names: Sequence[str], *, dataset: str) -> dict[str, Classification]:
        """Classify column names directly (for outputs Lacuna has not ingested)."""
        if self.remote or not names:
            return {}
        return dict(self.target.classify_columns(list(names), dataset=dataset))

    def close(self) -> None:
        if self.owned:
            close = getattr(self.target, "close", None)
            if callable(close):
                close()

    def __repr__(self) -> str:
        return f"Backend({self.description})"


_lock = threading.Lock()
_counter = itertools.count(1)
_attached: dict[str, Any] = {}


def attach_governor(governor: Any) -> str:
    """Make an open governor reachable by handle from resources built in this process."""
    with _lock:
        handle = f"governor-{next(_counter)}"
        _attached[handle] = governor
    return handle


def attached_governor(handle: str) -> Any:
    with _lock:
        governor = _attached.get(handle)
    if governor is None:
        raise ConfigError(
            f"no governor is attached as {handle!r} in this process; attach one with "
            "attach_governor() (or LacunaResource.from_governor) in the process that runs"
        )
    return governor


def detach_governor(handle: str) -> None:
    with _lock:
        _attached.pop(handle, None)


def in_process(governor: Any, *, owned: bool, environment: str | None = None,
               user: str | None = None) -> Backend:
    s = governor.settings
    return Backend(governor, remote=False, owned=owned,
                   environment=environment or s.environment, user=user or s.user,
                   description=f"in process, store {s.database_url}")


def remote(url: str, *, api_key: str | None, timeout_s: float, environment: str,
           user: str) -> Backend:
    try:
        from lacuna_orchestration.client import RemoteGovernor
    except ImportError as err:
        raise ConfigError(
            f"a Lacuna server URL is configured but the Lacuna HTTP client cannot be imported: {err}"
        ) from None
    client = RemoteGovernor(url, api_key=api_key, timeout_s=timeout_s)
    catalog = RemoteCatalog(url, api_key=api_key, timeout_s=timeout_s)
    return Backend(client, remote=True, owned=True, environment=environment, user=user,
                   description=f"server {url}", catalog=catalog)


class RemoteCatalog:
    """Read one dataset's classification from a Lacuna server (``GET /api/v1/datasets/{key}``).

    The HTTP client covers ingest and check; the checks and the UI metadata also need to know
    what a dataset *is*, which the server's catalog API answers."""

    def __init__(self, url: str, *, api_key: str | None, timeout_s: float) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s

    def dataset(self, ref: DatasetRef) -> dict[str, Any] | None:
        """The dataset's detail document, or None when the server does not know it (404).
        Raises ``StoreError`` when the server cannot be asked."""
        path = "/api/v1/datasets/" + urllib.parse.quote(ref.key, safe="")
        headers = {"Accept": "application/json", "User-Agent": "lacuna-dagster"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url + path, headers=headers, method="GET")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                body = response.read()
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            raise StoreError(f"{self.url} answered HTTP {err.code} for {ref.key}") from None
        except (OSError, ValueError) as err:
            raise StoreError(f"{self.url} is unreachable: {err}") from None
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise StoreError(f"{self.url} answered something that is not JSON") from None
        return data if isinstance(data, dict) else None


def settings_overrides(values: Mapping[str, Any]) -> dict[str, Any]:
    """Only the settings a resource actually set (None means: use Lacuna's own resolution)."""
    return {k: v for k, v in values.items() if v is not None}
