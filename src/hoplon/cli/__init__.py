"""The ``hoplon`` command line (Typer + Rich). Only this package prints."""
