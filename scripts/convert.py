"""`python scripts/convert.py` is `typed-bert convert`, from a checkout (see typed_bert/commands/convert.py)."""

from typed_bert.command_line import run
from typed_bert.commands.convert import main

if __name__ == "__main__":
    run(main)
