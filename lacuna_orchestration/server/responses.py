"""``JSON``: a response rendered with orjson (FastAPI's own ORJSONResponse is deprecated).

Routes return plain dicts built from the core's ``to_dict()`` methods; orjson writes them
several times faster than the stdlib, which matters on the ingest path.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

__all__ = ["JSON"]


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
