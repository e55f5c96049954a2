"""`typed-bert demo` from a checkout: `python scripts/demo.py --help`. The command lives in typed_bert/commands/demo.py."""

from typed_bert.command_line import run
from typed_bert.commands.demo import main

if __name__ == "__main__":
    run(main)
