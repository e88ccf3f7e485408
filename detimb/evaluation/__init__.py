"""Scoring: COCO/LVIS box and mask AP with the rare classes first, semantic segmentation's
Dice/IoU, diagnostics (PR curves, confusion matrices, COCO error breakdown), the reports
written as JSON, CSV and PNG, and ``evaluate`` (the verb)."""
