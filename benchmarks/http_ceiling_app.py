"""The HTTP ceiling for ``bench_server.py``: the same stack as the ingestor (FastAPI on
uvicorn, the same worker count, the same load generator) with a route that only reads and
parses the JSON body and answers 201. What it reaches on this machine bounds what any
ingest route can reach here, whatever the route does."""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

app = FastAPI()


@app.get("/readyz")
async def ready() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/api/v1/lineage", status_code=201)
async def lineage(request: Request) -> Response:
    event = orjson.loads(await request.body())
    return Response(orjson.dumps({"status": "accepted", "keys": len(event)}), status_code=201,
                    media_type="application/json")
