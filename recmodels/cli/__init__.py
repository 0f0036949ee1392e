"""The command line: ``python -m recmodels COMMAND``; the commands are listed in :mod:`recmodels.cli.parser`."""
