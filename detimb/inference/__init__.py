"""Prediction: ``restore`` (the one checkpoint -> ready model path), ``Predictor`` (images in,
arrays out), predictions over a dataset as COCO records, and sliced inference over large
scenes with its merge and map writers (``sliced``, ``merge``, ``geo``: the ``geo`` extra)."""
