"""Serving: an OpenAI-compatible HTTP server with continuous batching, Prometheus metrics and a web chat.

    olmoflow serve --model DIR [--host 127.0.0.1] [--port 8000] [--api-key KEY] [--trace-index DIR]

``app.create_app(model, tok, name)`` builds the FastAPI app (extra ``serve``: fastapi, uvicorn);
``runner.AsyncEngine`` steps the one generation engine on a thread; ``metrics.Metrics`` exposes
``/metrics``; ``static/index.html`` is the chat page at ``/``. Importing this package needs none of
the extras; ``olmoflow.serve.app`` does. See docs/serve.md.
"""
