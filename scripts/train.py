"""`python scripts/train.py` is `typed-bert train`, from a checkout (see typed_bert/commands/train.py)."""

from typed_bert.command_line import run
from typed_bert.commands.train import main

if __name__ == "__main__":
    run(main)
