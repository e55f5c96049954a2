"""`python scripts/predict.py` is `typed-bert predict`, from a checkout (see typed_bert/commands/predict.py)."""

from typed_bert.command_line import run
from typed_bert.commands.predict import main

if __name__ == "__main__":
    run(main)
