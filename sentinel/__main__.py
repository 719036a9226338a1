"""``python -m sentinel`` is the same as the ``sentinel`` console script."""

from sentinel.cli.main import main

main()
