"""Post-hoc calibration of a softmax RoI classifier for the long tail: no retraining, any
checkpoint with a softmax RoI head (torchvision's own layout included).

A calibration maps the predictor's (N, K + 1) logits (column 0 background) to (N, K)
foreground scores in place of the plain softmax. It holds the training set's per-class
counts as non-persistent buffers, so a checkpoint's state dict is the same with or without
it; ``model.roi_head.calibration`` in the config chooses it, and ``detimb-eval --calibrate``
chooses its strength on validation data.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detimb.errors import ConfigError
from detimb.losses import ClassStatistics
from detimb.registry import Registry

CALIBRATIONS = Registry("calibration")


class ScoreCalibration(nn.Module):
    """Base: ``forward(logits)`` -> (N, K) foreground scores from (N, K + 1) softmax logits."""

    def forward(self, logits: Tensor) -> Tensor:
        raise NotImplementedError


def _log_counts(counts: tuple[int, ...]) -> Tensor:
    """log of per-class counts, a class never seen in training counted once (log 1 = 0)
    rather than dividing by zero."""
    return torch.tensor(counts, dtype=torch.float64).clamp(min=1).log()


@CALIBRATIONS.register("norcal")
class NorCal(ScoreCalibration):
    """NorCal, normalised calibration (Pan et al., "On Model Calibration for Long-Tailed
    Object Detection and Instance Segmentation", NeurIPS 2021), as the released
    ``tydpan/NorCal`` ``projects/NorCal/norcal/roi_heads.py`` (``predict_probs``):

    - ``mode: exps`` (released default): ``exp(z_c) / n_c^gamma`` for each foreground class c,
      background's ``exp(z_0)`` untouched, then renormalised to sum to 1; computed as the
      softmax of ``[z_0, z_c - gamma log n_c]``, which is equal and cannot overflow;
    - ``mode: logits``: the softmax of ``[z_0, z_c n_c^-gamma]``.

    ``n_c`` is the class's training *image* count (the release's ``by="image"``), at least 1.
    Defaults: gamma 0 (the identity, as released: the release has no gamma search; detimb
    chooses gamma on validation data with ``detimb-eval --calibrate norcal``), mode exps. The
    release's ``RENORM: False`` (unnormalised exponentials as scores) and ``probs`` mode are
    not offered: their scores are not probabilities, and NorCal's results use the default.
    """

    def __init__(self, class_stats: ClassStatistics, gamma: float = 0.0, mode: str = "exps") -> None:
        super().__init__()
        if not gamma >= 0 or mode not in ("exps", "logits"):
            raise ConfigError(f"norcal needs gamma >= 0 and mode exps or logits, got gamma={gamma}, mode={mode!r}")
        self.gamma, self.mode = float(gamma), mode
        self.register_buffer("log_counts", _log_counts(class_stats.images), persistent=False)

    def forward(self, logits: Tensor) -> Tensor:
        z = logits.float()
        log_n = self.log_counts.to(z)
        exps = self.mode == "exps"  # exp(z) / n^gamma renormalised, as a softmax of shifted logits
        foreground = z[:, 1:] - self.gamma * log_n if exps else z[:, 1:] * torch.exp(-self.gamma * log_n)
        return F.softmax(torch.cat([z[:, :1], foreground], dim=1), dim=1)[:, 1:]


@CALIBRATIONS.register("logit_adjustment")
class LogitAdjustment(ScoreCalibration):
    """Post-hoc logit adjustment (Menon et al., "Long-Tail Learning via Logit Adjustment",
    ICLR 2021; ``google-research/google-research`` ``logit_adjustment``): ``z_c - tau log
    pi_c`` with ``pi_c`` the class's share of the training instances. The release is an
    image classifier with no background class; here background is left apart, as NorCal
    leaves it: its logit is untouched and the priors are over the K foreground classes
    (detimb's design). Default tau 1 (the paper's post-hoc choice)."""

    def __init__(self, class_stats: ClassStatistics, tau: float = 1.0) -> None:
        super().__init__()
        if not tau >= 0:
            raise ConfigError(f"logit_adjustment needs tau >= 0, got {tau}")
        self.tau = float(tau)
        log_n = _log_counts(class_stats.instances)
        self.register_buffer("log_prior", log_n - torch.logsumexp(log_n, 0), persistent=False)

    def forward(self, logits: Tensor) -> Tensor:
        z = logits.float()
        foreground = z[:, 1:] - self.tau * self.log_prior.to(z)
        return F.softmax(torch.cat([z[:, :1], foreground], dim=1), dim=1)[:, 1:]
