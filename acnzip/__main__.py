"""python -m acnzip: the command line."""
from .cli import main

main(prog_name="acnzip")
