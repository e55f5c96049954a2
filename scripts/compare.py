"""`typed-bert compare` from a checkout: `python scripts/compare.py --help`. The command lives in typed_bert/commands/compare.py."""

from typed_bert.command_line import run
from typed_bert.commands.compare import main

if __name__ == "__main__":
    run(main)
