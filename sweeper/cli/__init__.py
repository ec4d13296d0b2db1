"""The `sweeper` command: typer commands over sweeper.api, and the UI servers."""
