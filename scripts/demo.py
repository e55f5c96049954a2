"""`python scripts/demo.py` is `typed-bert demo`, from a checkout (see typed_bert/commands/demo.py)."""

from typed_bert.command_line import run
from typed_bert.commands.demo import main

if __name__ == "__main__":
    run(main)
