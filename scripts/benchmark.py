"""`python scripts/benchmark.py` is `typed-bert benchmark`, from a checkout (see typed_bert/commands/benchmark.py)."""

from typed_bert.command_line import run
from typed_bert.commands.benchmark import main

if __name__ == "__main__":
    run(main)
