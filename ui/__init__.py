"""User interfaces over `rag` and `ingest`: the `rag` command line (and, later, the web page)."""
