"""`python -m launcher.cli` runs the gptoss-sky CLI (used on machines where only the source tree is present)."""

from launcher.cli import main

main()
