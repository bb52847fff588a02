"""The command line, `rag` (`python -m ui.cli`): one interface over rag/ and ingest/, as the web page
(ui/web/) and the HTTP API are."""

from ui.cli.commands import app, main

__all__ = ["app", "main"]
