#!/usr/bin/env python
"""Thin command-line face of detimb.cli.train (see --help)."""

import sys

from detimb.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
