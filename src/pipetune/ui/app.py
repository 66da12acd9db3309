"""The dashboard's web app (Starlette): runs and studies, a run's drill-down, a study, a comparison.

It only reads: the store is opened read-only, and the only file served is Plotly's script from its package.
Unknown ids get a 404 page; every name, UDF and log line is escaped by the templates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from pipetune.errors import PipetuneError
from pipetune.report import plotly_js, render, run_charts, study_charts
from pipetune.store import Store, open_store
from pipetune.tune import Study, result_of
from pipetune.ui.views import compare, live_state

PLOTLY_SRC = "/assets/plotly.js"


def create_app(store_path: Path | None = None) -> Starlette:
    def store() -> Store:
        return open_store(store_path, readonly=True)  # a fresh read-only connection per request: live data

    async def index(request: Request) -> Response:
        db = store()
        script, status = request.query_params.get("script", ""), request.query_params.get("status", "")
        runs = [r for r in db.runs(limit=500) if script in r.script and (not status or r.status.value == status)]
        studies = [Study.fold(*db.load_study(sid)) for sid, _, _ in db.studies(limit=100)]
        studies = [s for s in studies if script in s.spec.script]
        return _page("index.html.j2", title="pipetune", runs=runs, studies=studies, script=script, status_filter=status)

    async def run_page(request: Request) -> Response:
        run = _or_404(lambda: store().load(request.path_params["run_id"]))
        from pipetune.report import run_page

        live = live_state(run) if not run.status.finished else None
        return _page("run.html.j2", title=f"run {run.id}", live=live, **run_page(run))

    async def study_page(request: Request) -> Response:
        db = store()
        study = _or_404(lambda: Study.fold(*db.load_study(request.path_params["study_id"])))
        result = result_of(study, db)
        best_runs = study.runs_of(result.best)
        best = db.load(best_runs[-1].run_id) if best_runs else None
        charts = study_charts(result) + (run_charts(best) if best else [])
        return _page("study.html.j2", title=f"study {study.id}", result=result, best=best, charts=charts)

    async def compare_page(request: Request) -> Response:
        db = store()
        a = _or_404(lambda: db.load(request.query_params.get("a", "")))
        b = _or_404(lambda: db.load(request.query_params.get("b", "")))
        if a.script != b.script:
            raise HTTPException(400, f"runs of different scripts ({a.script}, {b.script}) cannot be compared")
        return _page("compare.html.j2", title=f"{a.id} vs {b.id}", a=a, b=b, deltas=compare(a, b), charts=[])

    async def plotly(request: Request) -> Response:
        return Response(plotly_js(), media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})

    async def error(request: Request, exc: Exception) -> Response:
        code = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "the page could not be built"
        return _page("error.html.j2", status=code, title=f"{code}", code=code, detail=detail, charts=[])

    routes = [
        Route("/", index),
        Route("/runs/{run_id}", run_page),
        Route("/studies/{study_id}", study_page),
        Route("/compare", compare_page),
        Route(PLOTLY_SRC, plotly),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: error, Exception: error})


def _or_404(load: Any) -> Any:
    try:
        return load()
    except PipetuneError as err:
        raise HTTPException(404, str(err)) from None


def _page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("charts", [])
    return HTMLResponse(render(template, plotly_src=PLOTLY_SRC, dashboard=True, **context), status_code=status)


def serve(store_path: Path | None, host: str, port: int) -> None:
    import uvicorn

    open_store(store_path, readonly=True).close()  # a missing or foreign store is one clear line, not a traceback
    print(f"pipetune ui: http://{host}:{port}/ (Ctrl-C to stop)", flush=True)
    uvicorn.run(create_app(store_path), host=host, port=port, log_level="warning")
