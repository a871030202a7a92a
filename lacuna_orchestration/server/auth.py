"""API keys with roles and tenants.

A key looks like ``lcn_<key id>_<secret>``. Only the key id is stored in clear (it is how a
request finds its row); the secret is stored as ``HMAC-SHA256(salt, secret)`` with a random
salt per key and compared with ``hmac.compare_digest``, so a leaked table does not reveal keys
and a timing side channel does not either. Every key belongs to one tenant and has one role:

============  =============================================================================
role          may
============  =============================================================================
producer      post lineage (single and batch), ask the gate, request exceptions, read catalog
steward       ask the gate, request / approve / deny exceptions, override classifications,
              give feedback on decisions, read catalog
auditor       read catalog, audit records, verification, reports
admin         everything above, plus manage keys and archive the audit chain
============  =============================================================================

Verified keys are cached for ``cache_s`` seconds per process: a request does not need a
database read for its key, and a revoked key stops working everywhere within that time.

>>> from lacuna_orchestration.db import make_engine
>>> from lacuna_orchestration.server.tables import ensure_server_schema
>>> engine = make_engine("sqlite:///:memory:"); ensure_server_schema(engine)
>>> keys = ApiKeyStore(engine)
>>> token, info = keys.create(tenant="acme", role="producer", name="airflow", created_by="ops")
>>> keys.authenticate(token).tenant
'acme'
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from lacuna_orchestration.errors import NotFound, StoreError, ValidationError
from lacuna_orchestration.model import format_timestamp, utcnow
from lacuna_orchestration.server.config import TENANT_PATTERN
from lacuna_orchestration.server.tables import api_keys_table

__all__ = [
    "ApiKeyStore",
    "AuthError",
    "KeyInfo",
    "Permission",
    "Principal",
    "Role",
    "generate_key",
]

KEY_PREFIX = "lcn_"
_KEY = re.compile(r"^lcn_([0-9a-f]{16})_([A-Za-z0-9_-]{20,})$")


class Role(StrEnum):
    PRODUCER = "producer"
    STEWARD = "steward"
    AUDITOR = "auditor"
    ADMIN = "admin"

    @classmethod
    def parse(cls, value: str | Role) -> Role:
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            valid = ", ".join(r.value for r in cls)
            raise ValidationError(f"unknown role {value!r}; valid roles are {valid}") from None


class Permission(StrEnum):
    LINEAGE_WRITE = "lineage:write"
    GATE_CHECK = "gate:check"
    CATALOG_READ = "catalog:read"
    EXCEPTION_REQUEST = "exception:request"
    EXCEPTION_DECIDE = "exception:decide"
    CLASSIFICATION_OVERRIDE = "classification:override"
    FEEDBACK = "decision:feedback"
    AUDIT_READ = "audit:read"
    AUDIT_ARCHIVE = "audit:archive"
    KEYS_MANAGE = "keys:manage"


P = Permission
GRANTS: dict[Role, frozenset[Permission]] = {
    Role.PRODUCER: frozenset(
        {P.LINEAGE_WRITE, P.GATE_CHECK, P.CATALOG_READ, P.EXCEPTION_REQUEST}
    ),
    Role.STEWARD: frozenset(
        {P.GATE_CHECK, P.CATALOG_READ, P.EXCEPTION_REQUEST, P.EXCEPTION_DECIDE,
         P.CLASSIFICATION_OVERRIDE, P.FEEDBACK}
    ),
    Role.AUDITOR: frozenset({P.CATALOG_READ, P.AUDIT_READ}),
    Role.ADMIN: frozenset(Permission),
}


class AuthError(Exception):
    """A request without a usable key (401) or with a key lacking the permission (403)."""

    def __init__(self, status: int, message: str, principal: Principal | None = None):
        super().__init__(message)
        self.status = status
        self.principal = principal


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key id, its tenant and role, and the key's name for the audit."""

    key_id: str
    tenant: str
    role: Role
    name: str

    def can(self, permission: Permission) -> bool:
        return permission in GRANTS[self.role]

    @property
    def actor(self) -> str:
        """How the audit chain names this caller when the request names nobody else."""
        return f"key:{self.name or self.key_id}"

    @property
    def via(self) -> str:
        return f"api/key:{self.key_id}"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A stored key, without its secret."""

    key_id: str
    tenant: str
    role: Role
    name: str
    created_at: str
    created_by: str
    revoked_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id, "tenant": self.tenant, "role": self.role.value,
            "name": self.name, "created_at": self.created_at, "created_by": self.created_by,
            "revoked_at": self.revoked_at, "active": self.revoked_at is None,
        }


def generate_key() -> tuple[str, str]:
    """A fresh ``(key_id, token)``."""
    key_id = secrets.token_hex(8)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def _split(token: str) -> tuple[str, str]:
    """``(key_id, secret)`` of a token; any other non-trivial string (a bootstrap key set by
    an operator) gets a key id derived from its hash."""
    match = _KEY.match(token)
    if match:
        return match.group(1), match.group(2)
    return hashlib.sha256(token.encode()).hexdigest()[:16], token


def _digest(salt: str, secret: str) -> str:
    return hmac.new(bytes.fromhex(salt), secret.encode(), hashlib.sha256).hexdigest()


def _reason(err: SQLAlchemyError) -> str:
    text = str(getattr(err, "orig", err)).strip()
    return text.splitlines()[0] if text else type(err).__name__


class ApiKeyStore:
    """Keys in ``lacuna_api_keys`` (shared by all tenants; no key material in clear)."""

    def __init__(self, engine: Engine, *, cache_s: float = 5.0) -> None:
        self.engine = engine
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, tuple[str, str, KeyInfo] | None]] = {}
        self._lock = threading.Lock()

    # -- management ---------------------------------------------------------------------
    def create(
        self, *, tenant: str, role: Role | str, name: str, created_by: str,
        token: str | None = None,
    ) -> tuple[str, KeyInfo]:
        """Store a new key; returns the token (shown once) and what is stored about it."""
        if not TENANT_PATTERN.match(tenant):
            raise ValidationError(
                f"invalid tenant {tenant!r}: 1-64 letters, digits, '_' or '-'"
            )
        role = Role.parse(role)
        if token is None:
            key_id, token = generate_key()
            secret = _split(token)[1]
        else:
            if len(token) < 20:
                raise ValidationError("an API key must be at least 20 characters long")
            key_id, secret = _split(token)
        salt = secrets.token_hex(16)
        info = KeyInfo(key_id, tenant, role, name.strip() or key_id,
                       format_timestamp(utcnow()), created_by)
        try:
            with self.engine.begin() as conn:
                conn.execute(api_keys_table.insert().values(
                    key_id=key_id, tenant=tenant, role=role.value, name=info.name, salt=salt,
                    digest=_digest(salt, secret), created_at=info.created_at,
                    created_by=created_by, revoked_at=None,
                ))
        except IntegrityError:
            raise ValidationError(f"API key {key_id} already exists") from None
        except SQLAlchemyError as err:
            raise StoreError(f"cannot store the API key: {_reason(err)}") from None
        with self._lock:
            self._cache.pop(key_id, None)  # an earlier miss for this id is no longer true
        return token, info

    def ensure(self, token: str, *, tenant: str, role: Role | str, name: str) -> KeyInfo:
        """Make ``token`` a valid key (the bootstrap admin key); idempotent."""
        key_id, secret = _split(token)
        found = self._row(key_id)
        if found is not None:
            salt, digest, info = found
            if info.revoked_at is None and hmac.compare_digest(digest, _digest(salt, secret)):
                return info
            raise ValidationError(
                f"bootstrap key id {key_id} exists with another secret or was revoked"
            )
        return self.create(tenant=tenant, role=role, name=name, created_by="bootstrap",
                           token=token)[1]

    def list(self, tenant: str | None = None) -> list[KeyInfo]:
        query = select(api_keys_table).order_by(api_keys_table.c.created_at)
        if tenant is not None:
            query = query.where(api_keys_table.c.tenant == tenant)
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
        except SQLAlchemyError as err:
            raise StoreError(f"cannot list API keys: {_reason(err)}") from None
        return [_info(r) for r in rows]

    def get(self, key_id: str, tenant: str | None = None) -> KeyInfo:
        found = self._row(key_id)
        if found is None or (tenant is not None and found[2].tenant != tenant):
            raise NotFound(f"no API key {key_id!r}")
        return found[2]

    def revoke(self, key_id: str, tenant: str | None = None) -> KeyInfo:
        info = self.get(key_id, tenant)
        if info.revoked_at is not None:
            return info
        try:
            with self.engine.begin() as conn:
                conn.execute(update(api_keys_table)
                             .where(api_keys_table.c.key_id == key_id)
                             .values(revoked_at=format_timestamp(utcnow())))
        except SQLAlchemyError as err:
            raise StoreError(f"cannot revoke API key {key_id}: {_reason(err)}") from None
        with self._lock:
            self._cache.pop(key_id, None)
        return self.get(key_id)

    # -- authentication -----------------------------------------------------------------
    def authenticate(self, token: str) -> Principal:
        """The principal of a presented token; ``AuthError(401)`` for anything else."""
        key_id, secret = self._parse(token)
        return self._check(key_id, secret, self._cached(key_id))

    def authenticate_cached(self, token: str) -> Principal | None:
        """Like :meth:`authenticate` when the key's row is cached (no I/O: safe on the event
        loop); ``None`` when the database must be asked."""
        key_id, secret = self._parse(token)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key_id)
        if hit is None or hit[0] <= now:
            return None
        return self._check(key_id, secret, hit[1])

    @staticmethod
    def _parse(token: str) -> tuple[str, str]:
        if not token:
            raise AuthError(401, "missing API key: send 'Authorization: Bearer <key>'")
        return _split(token.strip())

    @staticmethod
    def _check(key_id: str, secret: str, found: tuple[str, str, KeyInfo] | None) -> Principal:
        if found is None:
            # Spend the same work as a real comparison so unknown ids do not answer faster.
            hmac.compare_digest(_digest("00" * 16, secret), "0" * 64)
            raise AuthError(401, "invalid API key")
        salt, digest, info = found
        if not hmac.compare_digest(digest, _digest(salt, secret)):
            raise AuthError(401, "invalid API key")
        if info.revoked_at is not None:
            raise AuthError(401, f"API key {key_id} was revoked at {info.revoked_at}")
        return Principal(info.key_id, info.tenant, info.role, info.name)

    def _cached(self, key_id: str) -> tuple[str, str, KeyInfo] | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        found = self._row(key_id)
        if self.cache_s > 0:
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[key_id] = (now + self.cache_s, found)
        return found

    def _row(self, key_id: str) -> tuple[str, str, KeyInfo] | None:
        try:
            with self.engine.connect() as conn:
                row = conn.execute(
                    select(api_keys_table).where(api_keys_table.c.key_id == key_id)
                ).first()
        except SQLAlchemyError as err:
            raise StoreError(f"cannot read API keys: {_reason(err)}") from None
        if row is None:
            return None
        return row.salt, row.digest, _info(row)


def _info(row: Any) -> KeyInfo:
    return KeyInfo(row.key_id, row.tenant, Role(row.role), row.name, row.created_at,
                   row.created_by, row.revoked_at)
