"""``tools/make_dataset.py``: write the built-in long-tailed shapes dataset."""

from detimb.data.synthetic import main

if __name__ == "__main__":
    main()
