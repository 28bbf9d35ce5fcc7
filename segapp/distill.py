"""Knowledge distillation: train a leaner net to match a trained one (``segapp train --teacher WEIGHTS``).

Why: every layer of the decoder-free net runs at full resolution, so its cost grows with the square of its width;
a thinner net is the way to speed. Trained from labels alone, a 32-wide net lost 0.005 mIoU over
digits to the 48-wide one. With a teacher, the student also learns the teacher's per-pixel class distribution
(Hinton et al. 2015, "Distilling the knowledge in a neural network"): which digit a stroke could also be, how
sure to be at a stroke's edge, on every training image, including the real-world-like ones whose labels are
ambiguous (void) at the edges.

The loss added to cross-entropy + Dice is ``weight x T^2 x KL(teacher_T || student_T)`` averaged over pixels, with
both distributions softened by temperature ``T`` (the T^2 keeps the gradient's scale independent of T, as in
Hinton et al.). The teacher runs with its BatchNorm folded, in eval mode, without gradients.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .engines import fold_batchnorm
from .model import DilatedNet, load_pretrained
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


def grows(parent_widths, widths) -> bool:
    """Whether ``widths`` are, layer by layer, at least ``parent_widths`` (equal counts as grown: nothing to do)."""
    return all(w >= p for w, p in zip(widths, parent_widths))


def _layers(net: DilatedNet) -> tuple[list[nn.Conv2d], list[nn.BatchNorm2d]]:
    """The net's convolutions and their BatchNorms, in order."""
    return ([m for m in net.features if isinstance(m, nn.Conv2d)],
            [m for m in net.features if isinstance(m, nn.BatchNorm2d)])


def shrink(parent: DilatedNet, widths: tuple[int, ...]) -> DilatedNet:
    """A net of ``widths`` (each at most the parent's, layer by layer) initialised from ``parent``: in every layer
    the channels with the largest BatchNorm scale |gamma| are kept, with their weights from and to the kept
    channels of the layers around them; the head reads the kept channels of the last layer.

    Why: a leaner student starts from what the teacher learnt rather than from noise. The trimmed net is not good
    on its own (each of the parent's channels matters: removing one per layer costs several points of mIoU), so
    this is a start for distillation (``segapp train --init PARENT --widths W --teacher PARENT``), not a result;
    layers that keep the parent's width and inputs keep its weights exactly."""
    pc = parent.config
    if len(widths) != len(pc.widths) or not grows(widths, pc.widths):  # the parent's widths grow from these
        raise ValueError(f"--widths {','.join(map(str, widths))} must be, layer by layer, at most the --init net's "
                         f"{','.join(map(str, pc.widths))}: a net can be trimmed from its parent, not grown")
    child = DilatedNet(replace(pc, widths=tuple(widths))).eval()
    (convs, norms), (child_convs, child_norms) = _layers(parent), _layers(child)
    kept_in = torch.arange(pc.in_channels)
    with torch.no_grad():
        for conv, bn, c2, bn2, w in zip(convs, norms, child_convs, child_norms, widths):
            kept = bn.weight.abs().argsort(descending=True)[:w].sort().values  # in the parent's channel order
            c2.weight.copy_(conv.weight[kept][:, kept_in])
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(bn2, name).copy_(getattr(bn, name)[kept])
            bn2.num_batches_tracked.copy_(bn.num_batches_tracked)
            kept_in = kept
        child.head.weight.copy_(parent.head.weight[:, kept_in])
        child.head.bias.copy_(parent.head.bias)
    return child


def resize(parent: DilatedNet, widths: tuple[int, ...]) -> DilatedNet:
    """``parent`` trimmed (:func:`shrink`) or grown (:func:`grow`) to ``widths``; ValueError when some layers
    would get narrower and others wider (do it in two runs, or start from scratch)."""
    pc = parent.config
    if len(widths) == len(pc.widths) and grows(pc.widths, widths):
        return grow(parent, widths)
    if len(widths) == len(pc.widths) and grows(widths, pc.widths):
        return shrink(parent, widths)
    raise ValueError(f"--widths {','.join(map(str, widths))} against the --init net's {','.join(map(str, pc.widths))}: "
                     "give 7 widths, each at most (to trim) or each at least (to grow) the parent's, layer by layer")


def grow(parent: DilatedNet, widths: tuple[int, ...], seed: int = 0) -> DilatedNet:
    """A net of ``widths`` (each at least the parent's, layer by layer) that computes exactly what ``parent``
    computes: the parent's channels keep their weights; each new channel reads every channel of the layer below
    through fresh (Kaiming) weights, and nothing reads it yet (its weights into the next layer and the head are 0).

    Why: a wider net is trained from what the parent learnt, not from noise (several hours of CPU training saved);
    the new channels start silent and are drawn in by the gradient of the weights that read them (Net2Net's goal,
    Chen et al. 2016, with zero outgoing weights in place of split copies, so no symmetry has to be broken)."""
    pc = parent.config
    if len(widths) != len(pc.widths) or not grows(pc.widths, widths):
        raise ValueError(f"--widths {','.join(map(str, widths))} must be, layer by layer, at least the --init net's "
                         f"{','.join(map(str, pc.widths))} to grow it")
    with torch.random.fork_rng(devices=[]):  # the same new weights every time (a blend grows the parent again)
        torch.manual_seed(seed)
        child = DilatedNet(replace(pc, widths=tuple(widths))).eval()
    (convs, norms), (child_convs, child_norms) = _layers(parent), _layers(child)
    c_in = pc.in_channels
    with torch.no_grad():
        for conv, bn, c2, bn2 in zip(convs, norms, child_convs, child_norms):
            w = conv.out_channels
            c2.weight[:, c_in:] = 0  # nothing reads the layer below's new channels yet
            c2.weight[:w, :c_in] = conv.weight
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(bn2, name)[:w] = getattr(bn, name)
            bn2.num_batches_tracked.copy_(bn.num_batches_tracked)
            c_in = w
        child.head.weight.zero_()
        child.head.weight[:, :c_in] = parent.head.weight
        child.head.bias.copy_(parent.head.bias)
    return child
