"""The RoI head's classification layer: torchvision's linear layer, or the normalised one
Seesaw is published with. Both keep torchvision's ``cls_score.weight``/``cls_score.bias``."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from detimb.registry import Registry

CLS_PREDICTORS = Registry("RoI classification layer")


@CLS_PREDICTORS.register("linear")
def linear(in_features: int, out_features: int) -> nn.Linear:
    """torchvision's ``FastRCNNPredictor.cls_score``: a plain linear layer."""
    return nn.Linear(in_features, out_features)


@CLS_PREDICTORS.register("normed_linear")
class NormedLinear(nn.Linear):
    """Cosine classifier, as mmdetection's ``NormedLinear`` (used with Seesaw, Wang et al.
    CVPR 2021): ``temperature * (x / (|x|^power + eps)) . (w / (|w|^power + eps)) + b`` with
    rows of ``w`` normalised per class. mmdetection spells the argument ``tempearture``.
    Defaults: temperature=20, power=1.0, eps=1e-6 (mmdetection's); weights normal std 0.01,
    bias 0, as mmdetection initialises it."""

    def __init__(self, in_features: int, out_features: int, temperature: float = 20.0, power: float = 1.0,
                 eps: float = 1e-6) -> None:
        super().__init__(in_features, out_features)
        if temperature <= 0 or eps <= 0:
            raise ValueError(f"normed_linear needs temperature > 0 and eps > 0, got {temperature}, {eps}")
        self.temperature, self.power, self.eps = temperature, power, eps
        nn.init.normal_(self.weight, 0, 0.01)
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight / (self.weight.norm(dim=1, keepdim=True).pow(self.power) + self.eps)
        x = x / (x.norm(dim=1, keepdim=True).pow(self.power) + self.eps)
        return F.linear(x * self.temperature, weight, self.bias)
