"""``python -m streams.cli``: the ``tipstream`` command without the installed script."""

from streams.cli.main import main

main()
