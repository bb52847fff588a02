"""The MCP server: agents reach the documents with the same permissions and audit as the API."""
