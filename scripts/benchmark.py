"""`typed-bert benchmark` from a checkout: `python scripts/benchmark.py --help`. The command lives in typed_bert/commands/benchmark.py."""

from typed_bert.command_line import run
from typed_bert.commands.benchmark import main

if __name__ == "__main__":
    run(main)
