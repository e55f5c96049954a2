"""`python scripts/evaluate.py` is `typed-bert evaluate`, from a checkout (see typed_bert/commands/evaluate.py)."""

from typed_bert.command_line import run
from typed_bert.commands.evaluate import main

if __name__ == "__main__":
    run(main)
