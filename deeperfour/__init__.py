"""DeeperFour: black-and-white film -> colorized film + cartoon film, temporally stable.

All real logic of the notebooks and of the ``deeperfour`` command lives in this package.
"""

__version__ = "0.1.0"
