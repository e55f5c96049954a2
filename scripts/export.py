"""`python scripts/export.py` is `typed-bert export`, from a checkout (see typed_bert/commands/export.py)."""

from typed_bert.command_line import run
from typed_bert.commands.export import main

if __name__ == "__main__":
    run(main)
