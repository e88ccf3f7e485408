#!/usr/bin/env python
"""Thin command-line face of detimb.cli.infer (see --help)."""

import sys

from detimb.cli.infer import main

if __name__ == "__main__":
    sys.exit(main())
