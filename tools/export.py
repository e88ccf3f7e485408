#!/usr/bin/env python
"""Thin command-line face of detimb.cli.export (see --help)."""

import sys

from detimb.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
