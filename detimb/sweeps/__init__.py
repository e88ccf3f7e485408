"""Which remedy helps *this* dataset: ``sweep`` trains remedies on the user's config, paired
by seed with the baseline, chooses on one half of the validation images and confirms on
the other, with intervals that carry training and validation noise (``run``, ``plan``,
``runner``, ``scoring``, ``statistics``, ``analysis``, ``report``)."""
