#!/usr/bin/env python
"""Thin command-line face of detimb.cli.make_dataset (see --help)."""

import sys

from detimb.cli.make_dataset import main

if __name__ == "__main__":
    sys.exit(main())
