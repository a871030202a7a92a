"""Reading a request body the way OpenLineage producers send it, within a size limit.

``HttpTransport`` posts JSON, gzip-compressed when configured (``Content-Encoding: gzip``).
The limit applies to the bytes received *and* to the decompressed bytes, so a small gzip
bomb is refused as early as a large body: the stream is read chunk by chunk and decompression
stops one byte past the limit.
"""

from __future__ import annotations

import zlib

from starlette.requests import ClientDisconnect, Request

from lacuna_orchestration.server.errors import ApiError

__all__ = ["JSON_TYPES", "NDJSON_TYPES", "read_body"]

JSON_TYPES = frozenset({"application/json", "text/json", "text/plain", ""})
NDJSON_TYPES = frozenset({
    "application/x-ndjson", "application/ndjson", "application/jsonl", "application/json-seq",
    "application/jsonlines", "application/json", "text/plain", "",
})
_IDENTITY = frozenset({"", "identity"})
_GZIP = frozenset({"gzip", "x-gzip"})


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _too_large(limit: int, what: str) -> ApiError:
    return ApiError(413, "body_too_large", f"{what} exceeds the limit of {limit:,} bytes", "body")


async def read_body(request: Request, limit: int, accepted_types: frozenset[str]) -> bytes:
    """The decompressed body, or ``ApiError`` (413 too large, 415 wrong type or encoding,
    400 broken gzip) naming the header or the body."""
    media = _media_type(request)
    if media not in accepted_types and not media.endswith("+json"):
        raise ApiError(
            415, "unsupported_media_type",
            f"Content-Type {media!r} is not accepted here; send application/json"
            + (" or application/x-ndjson" if "application/x-ndjson" in accepted_types else ""),
            "Content-Type",
        )
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding not in _IDENTITY and encoding not in _GZIP:
        raise ApiError(
            415, "unsupported_encoding",
            f"Content-Encoding {encoding!r} is not supported; send gzip or no encoding",
            "Content-Encoding",
        )
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, "bad_header", "Content-Length is not a number",
                           "Content-Length") from None
        if size > limit:
            raise _too_large(limit, f"the body ({size:,} bytes)")
    gzip = encoding in _GZIP
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzip else None
    received = 0
    parts: list[bytes] = []
    produced = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise _too_large(limit, "the body")
            if inflater is None:
                parts.append(chunk)
                continue
            out = _inflate(inflater, chunk, limit - produced, limit)
            produced += len(out)
            parts.append(out)
        if inflater is not None:
            tail = inflater.flush()
            produced += len(tail)
            if produced > limit:
                raise _too_large(limit, "the decompressed body")
            parts.append(tail)
            if not inflater.eof:
                raise ApiError(400, "bad_encoding",
                               "the gzip body is truncated (Content-Encoding: gzip)",
                               "Content-Encoding")
    except ClientDisconnect:
        raise ApiError(400, "client_disconnected", "the client went away mid-body",
                       "body") from None
    return b"".join(parts)


def _inflate(inflater: zlib._Decompress, chunk: bytes, room: int, limit: int) -> bytes:
    """Decompress ``chunk`` producing at most ``room + 1`` bytes: one past the room left
    is enough to know the limit is exceeded, without inflating the rest."""
    try:
        out = inflater.decompress(chunk, room + 1)
    except zlib.error as err:
        raise ApiError(400, "bad_encoding",
                       f"the body is not valid gzip ({err}) although Content-Encoding is gzip",
                       "Content-Encoding") from None
    if len(out) > room:
        raise _too_large(limit, "the decompressed body")
    return out
