"""The ``hoplon`` command line (Typer + Rich). Only this package prints."""

from __future__ import annotations

import sys


def run() -> None:  # pragma: no cover - the console-script shim, exercised by the scan benchmark
    """Entry point of the ``hoplon`` script.

    ``hoplon scan ...`` goes straight to its lean front end (:mod:`hoplon.cli.scanning`) without importing
    Typer; everything else builds the full Typer app in :mod:`hoplon.cli.main`.
    """
    if sys.argv[1:2] == ["scan"]:
        from hoplon.cli.scanning import main as scan_main

        sys.exit(scan_main(sys.argv[2:]))
    from hoplon.cli.main import main

    sys.exit(main())
