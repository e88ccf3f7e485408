#!/usr/bin/env python
"""Thin command-line face of detimb.cli.convert (see --help)."""

import sys

from detimb.cli.convert import main

if __name__ == "__main__":
    sys.exit(main())
