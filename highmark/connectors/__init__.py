"""API connectors: sources that read HTTP APIs (GitHub, Jira, Microsoft Graph, Fabric), all
through the one HTTP client in :mod:`highmark.connectors.http`."""
