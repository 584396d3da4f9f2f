"""``python -m topictone.label <subcommand> key=value ...``: ``python -m topictone.train.label``."""

from topictone.train.label.__main__ import main

if __name__ == "__main__":
    main()
