#!/usr/bin/env python
"""Thin command-line face of detimb.data.fashion (see --help): the long-tailed Fashion-MNIST canvases."""

from detimb.data.fashion import main

if __name__ == "__main__":
    main()
