"""`typed-bert evaluate` from a checkout: `python scripts/evaluate.py --help`. The command lives in typed_bert/commands/evaluate.py."""

from typed_bert.command_line import run
from typed_bert.commands.evaluate import main

if __name__ == "__main__":
    run(main)
