"""The ``hsiseg`` command line: thin typer commands over the :mod:`hsiseg` library."""
