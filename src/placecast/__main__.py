"""``python -m placecast``: the same as the ``placecast`` command."""

from placecast.cli import main

if __name__ == "__main__":
    main()
