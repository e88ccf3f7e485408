"""The one place detimb subclasses torchvision's heads: their training losses become
injected sampler / loss / balancer objects; their inference paths stay torchvision's."""

from detimb.models.heads.fcos import DetimbFCOS, DetimbFCOSHead
from detimb.models.heads.retinanet import DetimbRetinaNet, DetimbRetinaNetHead
from detimb.models.heads.roi_heads import DetimbRoIHeads
from detimb.models.heads.rpn import DetimbRPN
from detimb.models.heads.ssd import DetimbSSD

__all__ = ["DetimbFCOS", "DetimbFCOSHead", "DetimbRPN", "DetimbRetinaNet", "DetimbRetinaNetHead", "DetimbRoIHeads",
           "DetimbSSD"]
