#!/usr/bin/env python
"""Thin command-line face of detimb.cli.make_fashion_dataset (see --help): the long-tailed Fashion-MNIST canvases."""

import sys

from detimb.cli.make_fashion_dataset import main

if __name__ == "__main__":
    sys.exit(main())
