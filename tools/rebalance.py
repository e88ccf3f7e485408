#!/usr/bin/env python
"""Thin command-line face of detimb.cli.rebalance (see --help)."""

import sys

from detimb.cli.rebalance import main

if __name__ == "__main__":
    sys.exit(main())
