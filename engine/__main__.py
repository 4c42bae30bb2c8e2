"""`python -m engine train ...`: the headless trainer, with no Qt anywhere (torchrun launches it so)."""
import sys

from engine.cli import main

sys.exit(main())
