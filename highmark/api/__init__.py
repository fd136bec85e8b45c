"""The REST API and the web dashboard (``highmark serve``), thin over the Python API.

    app.py        the FastAPI application: errors as JSON, security headers, the audit hook
    auth.py       bearer tokens (read / admin), dashboard sessions and CSRF tokens
    launcher.py   runs started from the API, each in a child process (child.py)
    routes.py     the ``/api/v1`` routes
    shapes.py     JSON shapes of the records (the control tables' column names)
    dashboard.py  the server-rendered pages (templates/, static/, charts.py)
    docs.py       ``/docs``: the OpenAPI document as a page that needs no CDN

FastAPI, uvicorn and Jinja2 come with ``pip install 'highmark[api]'`` and are imported only by
``highmark serve`` (and by this package).
"""

from __future__ import annotations
