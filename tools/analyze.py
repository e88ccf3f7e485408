#!/usr/bin/env python
"""Thin command-line face of detimb.cli.analyze (see --help)."""

import sys

from detimb.cli.analyze import main

if __name__ == "__main__":
    sys.exit(main())
