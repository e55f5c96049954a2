"""The `typed-bert` subcommands: each parses its arguments and calls the library (see typed_bert.cli)."""
