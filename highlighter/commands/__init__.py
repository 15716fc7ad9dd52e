"""The jobs behind each CLI subcommand. ``cli.py`` only parses arguments and calls ``run(args)``."""
