"""Core library of the on-prem question-answering service: settings, embedding, index, search.

It knows nothing of ingestion or user interfaces; `ingest` and `ui` build on it.
"""

__version__ = "0.1.0"
