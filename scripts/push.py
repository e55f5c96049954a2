"""`typed-bert push` from a checkout: `python scripts/push.py --help`. The command lives in typed_bert/commands/push.py."""

from typed_bert.command_line import run
from typed_bert.commands.push import main

if __name__ == "__main__":
    run(main)
