#!/usr/bin/env python
"""Thin command-line face of detimb.cli.evaluate (see --help)."""

import sys

from detimb.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
