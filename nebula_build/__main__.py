"""`python -m nebula_build`."""

from .cli import main_exit

main_exit()
