#!/usr/bin/env python
"""Thin command-line face of detimb.cli.tile (see --help)."""

import sys

from detimb.cli.tile import main

if __name__ == "__main__":
    sys.exit(main())
