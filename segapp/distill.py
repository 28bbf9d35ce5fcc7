"""Knowledge distillation: train a leaner net to match a trained one (``segapp train --teacher WEIGHTS``).

Why: every layer of the decoder-free net runs at full resolution, so its cost grows with the square of its width;
a thinner net is the way to speed (issue "Speed"). Trained from labels alone, a 32-wide net lost 0.005 mIoU over
digits to the 48-wide one. With a teacher, the student also learns the teacher's per-pixel class distribution
(Hinton et al. 2015, "Distilling the knowledge in a neural network"): which digit a stroke could also be, how
sure to be at a stroke's edge, on every training image, including the real-world-like ones whose labels are
ambiguous (void) at the edges.

The loss added to cross-entropy + Dice is ``weight x T^2 x KL(teacher_T || student_T)`` averaged over pixels, with
both distributions softened by temperature ``T`` (the T^2 keeps the gradient's scale independent of T, as in
Hinton et al.). The teacher runs with its BatchNorm folded, in eval mode, without gradients.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .engines import fold_batchnorm
from .model import load_pretrained
from .runtime import autocast


class Teacher:
    """A trained segapp net whose softened class distribution the student learns (see the module docstring)."""

    def __init__(self, model: nn.Module, device: torch.device, amp: bool, weight: float = 1.0,
                 temperature: float = 2.0):
        self.net = fold_batchnorm(model).to(device).to(memory_format=torch.channels_last).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.device, self.amp = device, amp
        self.weight, self.temperature = float(weight), float(temperature)

    @classmethod
    def load(cls, path: str | Path, device: torch.device, amp: bool, weight: float = 1.0,
             temperature: float = 2.0) -> Teacher:
        """The teacher saved in ``path`` (a weights folder, as ``--weights`` takes); WeightsError if unreadable."""
        return cls(load_pretrained(path), device, amp, weight, temperature)

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) inputs -> the teacher's (N, C, H, W) float32 logits."""
        with autocast(self.device, self.amp):
            return self.net(x).float()

    def loss(self, x: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
        """``weight x T^2 x`` the mean over pixels of KL(teacher || student), both at temperature T."""
        t = self.temperature
        target = (self.logits(x) / t).log_softmax(1)  # log-probabilities: exact where a probability underflows
        log_student = (student_logits.float() / t).log_softmax(1)
        kl = F.kl_div(log_student, target, reduction="none", log_target=True).sum(1)  # (N, H, W)
        return self.weight * t * t * kl.mean()
