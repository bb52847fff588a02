"""Turns folders of documents into index updates through the `rag` core."""
