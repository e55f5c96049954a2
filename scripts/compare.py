"""`python scripts/compare.py` is `typed-bert compare`, from a checkout (see typed_bert/commands/compare.py)."""

from typed_bert.command_line import run
from typed_bert.commands.compare import main

if __name__ == "__main__":
    run(main)
