"""A project for the API tests: jobs on a real database, tokens from the environment, and the real
application served by a real uvicorn on 127.0.0.1 (in a thread of the test process, with its
lifespan: runs started through it run in child processes against the same databases)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml
from fastapi import FastAPI
from sqlalchemy.engine import Engine

from highmark.api.app import create_app
from highmark.project import Project
from tests.helpers import copy_job, seed_orders

READ_TOKEN = "read-token-for-tests-0001"
ADMIN_TOKEN = "admin-token-for-tests-0002"
READ = {"Authorization": f"Bearer {READ_TOKEN}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
WAIT_SECONDS = 90


def write_api_project(
    path: Path, url: str, *, metrics_public: bool = False, rows: int = 12
) -> Path:
    document: dict[str, Any] = {
        "control": url,
        "connections": {"db": url},
        "jobs": {
            "sync": {**copy_job(batch_size=5), "freshness": "1h"},
            "broken": {
                **copy_job(),
                "source": {"connection": "db", "table": "no_such_table"},
                "target": {"connection": "db", "table": "broken_copy"},
            },
        },
        "api": {
            "tokens": [
                {"name": "grafana", "token": "${HM_READ_TOKEN}", "scope": "read"},
                {"name": "ops", "token": "${HM_ADMIN_TOKEN}", "scope": "admin"},
            ],
            "metrics_public": metrics_public,
        },
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.fixture
def api_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HM_READ_TOKEN", READ_TOKEN)
    monkeypatch.setenv("HM_ADMIN_TOKEN", ADMIN_TOKEN)


@contextmanager
def uvicorn_server(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` on a free port of 127.0.0.1 until the block ends; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_SECONDS
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=WAIT_SECONDS)
        sock.close()


@contextmanager
def served(
    url: str,
    tmp_path: Path,
    engine_for: Callable[[str], Engine],
    *,
    metrics_public: bool = False,
) -> Iterator[tuple[httpx.Client, Project, FastAPI]]:
    seed_orders(engine_for(url), 12)
    project = Project.load(
        write_api_project(tmp_path / "highmark.yml", url, metrics_public=metrics_public)
    )
    app = create_app(project)
    with uvicorn_server(app) as base, httpx.Client(base_url=base, timeout=WAIT_SECONDS) as client:
        yield client, project, app


def wait_for_run(client: httpx.Client, run_id: int) -> dict[str, Any]:
    """Poll a run until it has ended (bounded: fails after WAIT_SECONDS)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        run: dict[str, Any] = client.get(f"/api/v1/runs/{run_id}", headers=READ).json()
        if run["run_status"] != "running":
            return run
        assert time.monotonic() < deadline, f"run {run_id} is still running"
        time.sleep(0.1)
