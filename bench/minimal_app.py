"""The ceiling for one uvicorn worker: a FastAPI endpoint that reads the body and answers 202."""

from __future__ import annotations

from fastapi import FastAPI, Request, Response


def create_app() -> FastAPI:
    app = FastAPI(telemetry={"tracing": False, "metrics": False, "logs": False})

    @app.post("/v1/events", status_code=202)
    async def accept(request: Request) -> Response:
        await request.body()
        return Response(b'{"accepted":1,"rejected":[]}', 202, media_type="application/json")

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app
