"""`python scripts/push.py` is `typed-bert push`, from a checkout (see typed_bert/commands/push.py)."""

from typed_bert.command_line import run
from typed_bert.commands.push import main

if __name__ == "__main__":
    run(main)
