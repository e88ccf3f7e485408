#!/usr/bin/env python
"""Thin command-line face of detimb.cli.merge_classes (see --help)."""

import sys

from detimb.cli.merge_classes import main

if __name__ == "__main__":
    sys.exit(main())
