"""Long-tail classification losses of the RoI head: Seesaw, EQL, EQLv2 and the federated loss.

Each takes the training set's ``ClassStatistics`` or accumulates its own per-class state
in buffers, so the state is saved in checkpoints and a resumed run continues exactly.
Sigmoid losses here take (N, K) logits in the RoI head (``Columns.FOREGROUND``, column j
for label j + 1) or, EQLv2, (N, K + 1) with column 0 its background output; in RetinaNet
(N, K + 1) with torchvision's never-positive column 0, which they leave unweighted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from detimb.losses.buffers import adopt_saved_shapes, all_reduce_sum, updates_state
from detimb.losses.classification import CLS_LOSSES, BatchClasses, ClassificationLoss, Columns, Form
from detimb.losses.reduce import weighted_sum
from detimb.losses.statistics import ClassStatistics


def _per_column(values: Tensor, width: int, background: float) -> Tensor:
    """A per-class vector (K,) laid over ``width`` columns: K as is, K + 1 with
    ``background`` in front for column 0."""
    if width == values.numel():
        return values
    if width != values.numel() + 1:
        raise ValueError(f"the classifier has {width} outputs but the loss knows {values.numel()} classes")
    return torch.cat([values.new_full((1,), background), values])


def _require(stats: ClassStatistics | None, name: str) -> ClassStatistics:
    if stats is None:
        raise ValueError(f"{name} needs the training set's class statistics; build the model with class_stats"
                         " (the trainer does), or load a checkpoint that has them")
    return stats


@CLS_LOSSES.register("seesaw")
class SeesawLoss(ClassificationLoss):
    """Seesaw loss (Wang et al., "Seesaw Loss for Long-Tailed Instance Segmentation", CVPR
    2021), as mmdetection's ``seesaw_loss.py``. Softmax cross-entropy where the logit of
    each non-target class j of a sample of class i is shifted by ``log S_ij``,
    ``S_ij = M_ij C_ij``:

    - mitigation ``M_ij = (N_j / N_i)^p`` where ``N_j < N_i``, else 1, from class counts
      ``N`` accumulated online over the sampled candidates (a buffer, saved in checkpoints);
    - compensation ``C_ij = (sigma_j / sigma_i)^q`` where ``sigma_j > sigma_i``, else 1,
      from the sample's detached softmax scores (``sigma_i`` clamped at ``eps``).

    ``objectness: true`` is mmdetection's layout (K + 2 outputs): a softmax over the K
    classes on positives only, plus a two-way background/foreground softmax on every
    candidate; scores are ``softmax(classes) * p(foreground)``. Here the outputs are
    column 0 background, 1..K the classes, K + 1 foreground. Without it (detimb's variant,
    for torchvision's K + 1 predictor), the factors act among the foreground classes only:
    background keeps factor 1 in both directions and its count is not used.
    Defaults: p=0.8, q=2.0, eps=0.01, objectness=false, loss_weight 1 (mmdetection's).
    """

    form = Form.SOFTMAX
    per_class = True

    def __init__(self, p: float = 0.8, q: float = 2.0, eps: float = 1e-2, objectness: bool = False,
                 loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        if p < 0 or q < 0 or eps <= 0:
            raise ValueError(f"seesaw needs p >= 0, q >= 0 and eps > 0, got p={p}, q={q}, eps={eps}")
        self.p, self.q, self.eps, self.objectness = p, q, eps, objectness
        self.register_buffer("cum_samples", torch.zeros(0, dtype=torch.float64))  # (K + 1,), label order

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        adopt_saved_shapes(self, state_dict, prefix, ("cum_samples",))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def roi_outputs(self, num_classes: int) -> int:
        return num_classes + 1 if self.objectness else num_classes

    def roi_scores(self, logits: Tensor) -> Tensor:
        if not self.objectness:
            return super().roi_scores(logits)
        objectness = F.softmax(logits[:, [0, -1]], -1)
        return F.softmax(logits[:, 1:-1], -1) * objectness[:, 1:]

    def _num_labels(self, logits: Tensor) -> int:
        return logits.shape[1] - 1 if self.objectness else logits.shape[1]

    def seesaw_ce(self, logits: Tensor, labels: Tensor, counts: Tensor, foreground_from: int) -> Tensor:
        """(N,) seesaw cross-entropy of softmax ``logits`` (N, C) with class ``labels``;
        ``counts`` (C,); columns before ``foreground_from`` keep factor 1."""
        n, c = logits.shape
        factors = logits.new_ones(n, c)
        if n == 0:
            return logits.sum(1)
        if self.p > 0:
            ratio = (counts[None, :].clamp(min=1) / counts[:, None].clamp(min=1)).to(logits.dtype)
            mitigation = torch.where(ratio < 1, ratio.pow(self.p), torch.ones_like(ratio))
            factors = factors * mitigation[labels]
        if self.q > 0:
            scores = F.softmax(logits.detach(), dim=1)
            own = scores.gather(1, labels[:, None]).clamp(min=self.eps)
            ratio = scores / own
            factors = factors * torch.where(ratio > 1, ratio.pow(self.q), torch.ones_like(ratio))
        if foreground_from:
            factors[:, :foreground_from] = 1
            factors[labels < foreground_from] = 1
        onehot = F.one_hot(labels, c).to(logits.dtype)
        return F.cross_entropy(logits + factors.log() * (1 - onehot), labels, reduction="none")

    def elementwise(self, logits: Tensor, targets: Tensor) -> Tensor:
        counts = self.cum_samples if self.cum_samples.numel() else logits.new_zeros(self._num_labels(logits))
        if not self.objectness:
            return self.seesaw_ce(logits, targets, counts, foreground_from=1)
        positive = targets > 0
        loss = F.cross_entropy(logits[:, [0, -1]], positive.long(), reduction="none")
        classes = self.seesaw_ce(logits[positive, 1:-1], targets[positive] - 1, counts[1:], foreground_from=0)
        return loss.index_add(0, torch.where(positive)[0], classes)

    def forward(self, logits: Tensor, targets: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None, *, batch: BatchClasses | None = None) -> Tensor:
        if updates_state(self):
            with torch.no_grad():
                if self.cum_samples.numel() == 0:
                    self.cum_samples = torch.zeros(self._num_labels(logits), dtype=torch.float64,
                                                   device=logits.device)
                kept = targets if weight is None else targets[weight.reshape(len(targets), -1).amax(1) > 0]
                # every rank's samples, as EQLv2's gradients (DDP's buffer broadcast would keep rank 0's only)
                self.cum_samples += all_reduce_sum(
                    torch.bincount(kept, minlength=self.cum_samples.numel()).to(torch.float64))
        return super().forward(logits, targets, weight, avg_factor)


@CLS_LOSSES.register("eql")
class EQLLoss(ClassificationLoss):
    """Equalization loss (Tan et al., "Equalization Loss for Long-Tailed Object
    Recognition", CVPR 2020), as the authors' ``tztztztztz/eql.detectron2``: sigmoid
    cross-entropy whose weight on class j is ``1 - E(r) T(f_j) (1 - y_j)``: on foreground
    proposals (E = 1) the negative gradients of tail classes (image frequency
    ``f_j < lambda_``, from the training set) are dropped. Background proposals keep every
    term. Defaults: lambda_=1.77e-3, the released value (``LAMBDA: 0.00177`` in
    ``projects/EQL/configs/Base-EQL-RCNN-FPN.yaml``; the paper reports 1.76e-3),
    loss_weight 1.
    """

    form = Form.SIGMOID
    uses_class_stats = True
    per_class = True

    def __init__(self, lambda_: float = 1.77e-3, loss_weight: float = 1.0,
                 class_stats: ClassStatistics | None = None) -> None:
        super().__init__(loss_weight)
        self.lambda_ = lambda_
        tail = torch.zeros(0) if class_stats is None else (class_stats.image_frequency() < lambda_).float()
        self.register_buffer("tail", tail)  # (K,) 1 where T(f_j) = 1

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        adopt_saved_shapes(self, state_dict, prefix, ("tail",))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def elementwise(self, logits: Tensor, targets: Tensor) -> Tensor:
        if self.tail.numel() == 0:
            _require(None, "eql")
        targets = targets.to(logits.dtype)
        foreground = (targets.sum(1) > 0).to(logits.dtype)
        tail = _per_column(self.tail.to(logits.dtype), logits.shape[1], background=0.0)
        weight = 1 - foreground[:, None] * tail[None, :] * (1 - targets)
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * weight


@CLS_LOSSES.register("eqlv2")
class EQLv2Loss(ClassificationLoss):
    """Equalization loss v2 (Tan et al., "Equalization Loss v2: A New Gradient Balance
    Approach for Long-tailed Object Detection", CVPR 2021), as the authors'
    ``tztztztztz/eqlv2`` (mmdetection ``eqlv2.py``). Sigmoid cross-entropy with per-class
    weights from the accumulated ratio ``g_j`` of positive to negative gradient magnitudes:
    negatives weigh ``f(g_j) = 1 / (1 + exp(-gamma (g_j - mu)))``, positives
    ``1 + alpha (1 - f(g_j))``. The gradients are accumulated after every training step
    (buffers, all-reduced over ranks, saved in checkpoints); the first step uses weight 1.

    As the released code, the RoI classifier has K + 1 sigmoid outputs: column 0 (the
    released code's last) is a background output with target 1 on background proposals and
    weight 1, and a class's score is ``sigmoid(x_j) * (1 - sigmoid(x_bg))``. In RetinaNet
    column 0 is torchvision's never-positive column, also at weight 1.
    Defaults: gamma=12, mu=0.8, alpha=4.0, loss_weight 1.
    """

    form = Form.SIGMOID
    per_class = True
    columns = Columns.WITH_BACKGROUND

    def __init__(self, gamma: float = 12.0, mu: float = 0.8, alpha: float = 4.0, loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        self.gamma, self.mu, self.alpha = gamma, mu, alpha
        self.register_buffer("pos_grad", torch.zeros(0, dtype=torch.float64))  # (K,)
        self.register_buffer("neg_grad", torch.zeros(0, dtype=torch.float64))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        adopt_saved_shapes(self, state_dict, prefix, ("pos_grad", "neg_grad"))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def class_weights(self, logits: Tensor) -> tuple[Tensor, Tensor]:
        """(C,) positive and negative weights of the columns, from the accumulated gradients."""
        width = logits.shape[1]
        if self.pos_grad.numel() == 0:
            ones = logits.new_ones(width)
            return ones, ones
        ratio = self.pos_grad / (self.neg_grad + 1e-10)
        neg = (1 / (1 + torch.exp(-self.gamma * (ratio - self.mu)))).to(logits.dtype)
        neg = _per_column(neg, width, background=1.0)
        return 1 + self.alpha * (1 - neg), neg

    def _element_weights(self, logits: Tensor, targets: Tensor) -> Tensor:
        pos, neg = self.class_weights(logits)
        return pos[None, :] * targets + neg[None, :] * (1 - targets)

    def elementwise(self, logits: Tensor, targets: Tensor) -> Tensor:
        targets = targets.to(logits.dtype)
        bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        return bce * self._element_weights(logits, targets)

    def forward(self, logits: Tensor, targets: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None, *, batch: BatchClasses | None = None) -> Tensor:
        loss = super().forward(logits, targets, weight, avg_factor)
        if updates_state(self):
            self._collect(logits.detach(), targets.to(logits.dtype), weight)
        return loss

    @torch.no_grad()
    def _collect(self, logits: Tensor, targets: Tensor, weight: Tensor | None) -> None:
        """Accumulate |dL/dx| of the positives and negatives of each class (column 0 excluded)."""
        w = self._element_weights(logits, targets)
        if weight is not None:  # only candidates the sampler kept
            w = w * (weight.reshape(len(logits), -1) > 0)
        prob = torch.sigmoid(logits)
        grad = (targets * (prob - 1) + (1 - targets) * prob).abs()
        pos = all_reduce_sum((grad * targets * w).sum(0)[1:].to(torch.float64))  # column 0: background
        neg = all_reduce_sum((grad * (1 - targets) * w).sum(0)[1:].to(torch.float64))
        if self.pos_grad.numel() == 0:
            self.pos_grad, self.neg_grad = torch.zeros_like(pos), torch.zeros_like(neg)
        self.pos_grad += pos
        self.neg_grad += neg


@CLS_LOSSES.register("federated")
class FederatedLoss(ClassificationLoss):
    """Federated loss (Zhou et al., "Probabilistic two-stage detection", 2021; detectron2
    ``fast_rcnn.py`` ``USE_FED_LOSS``): sigmoid cross-entropy over a class set drawn each
    step: the batch's ground-truth classes, the classes verified absent from its images
    (LVIS's ``neg_category_ids``, when the data has them), and classes sampled without
    replacement in proportion to ``images_j ^ freq_weight_power`` (detectron2's
    ``get_fed_loss_cls_weights``, on the training set's image counts) until the set has
    ``num_classes`` members. As the released code, background counts as one of the
    batch's classes when background proposals are present. Other classes' terms are
    dropped, and so are the negative terms of a class on candidates whose image does not
    label it exhaustively (LVIS's ``not_exhaustive_category_ids``). In RetinaNet column 0
    is always in the set. Defaults: num_classes=50
    (``FED_LOSS_NUM_CLASSES``), freq_weight_power=0.5, loss_weight 1.
    """

    form = Form.SIGMOID
    uses_class_stats = True
    per_class = True

    def __init__(self, num_classes: int = 50, freq_weight_power: float = 0.5, loss_weight: float = 1.0,
                 class_stats: ClassStatistics | None = None) -> None:
        super().__init__(loss_weight)
        if num_classes < 1:
            raise ValueError(f"federated needs num_classes >= 1, got {num_classes}")
        self.num_classes, self.freq_weight_power = num_classes, freq_weight_power
        freq = torch.zeros(0) if class_stats is None else \
            torch.tensor(class_stats.images, dtype=torch.float32).pow(freq_weight_power)
        self.register_buffer("freq_weight", freq)  # (K,)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        adopt_saved_shapes(self, state_dict, prefix, ("freq_weight",))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def elementwise(self, logits: Tensor, targets: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none")

    def class_set(self, targets: Tensor, negative: Tensor | None) -> Tensor:
        """(K,) bool: the classes whose terms count this step. ``targets`` (N, C) one-hot;
        ``negative``: labels verified absent (1-based)."""
        if self.freq_weight.numel() == 0:
            _require(None, "federated")
        k = self.freq_weight.numel()
        fg = targets[:, -k:] > 0
        chosen = fg.any(0)
        if negative is not None and negative.numel():
            chosen[(negative - 1).clamp(0, k - 1)] = True
        fixed = int(chosen.sum()) + int(bool((~fg.any(1)).any()))  # the released code counts background too
        if fixed < self.num_classes:
            prob = torch.where(chosen, torch.zeros_like(self.freq_weight), self.freq_weight)
            draw = min(self.num_classes - fixed, int((prob > 0).sum()))
            if draw > 0:
                chosen[torch.multinomial(prob, draw, replacement=False)] = True
        return chosen

    def forward(self, logits: Tensor, targets: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None, *, batch: BatchClasses | None = None) -> Tensor:
        chosen = self.class_set(targets, None if batch is None else batch.negative)
        mask = _per_column(chosen.to(logits.dtype), logits.shape[1], background=1.0)[None, :]
        if batch is not None:  # no negative signal where the image's labels of the class are incomplete
            unknown = batch.not_exhaustive[:, -logits.shape[1]:] & (targets == 0)
            mask = mask * (~unknown).to(logits.dtype)
        loss = self.elementwise(logits, targets) * mask
        return self.loss_weight * weighted_sum(loss, weight, avg_factor)
