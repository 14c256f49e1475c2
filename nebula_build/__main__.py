"""`python -m nebula_build`."""

from nebula_build.cli import main_exit

main_exit()
