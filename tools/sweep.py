#!/usr/bin/env python
"""Thin command-line face of detimb.cli.sweep (see --help)."""

import sys

from detimb.cli.sweep import main

if __name__ == "__main__":
    sys.exit(main())
