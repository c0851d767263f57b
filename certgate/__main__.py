"""``python -m certgate``: the same entry point as the ``certgate`` console script."""

from certgate.cli.main import main

if __name__ == "__main__":
    main()
