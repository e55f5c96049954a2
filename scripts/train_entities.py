"""`python scripts/train_entities.py` is `typed-bert train-entities`, from a checkout (typed_bert/commands/)."""

from typed_bert.command_line import run
from typed_bert.commands.train_entities import main

if __name__ == "__main__":
    run(main)
