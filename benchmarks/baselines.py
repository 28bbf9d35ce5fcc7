"""The architectures ``python -m benchmarks.bench`` compares, plus the measurements it reports about each.

Four nets, one input/output contract: (N, 1, H, W) in [0, 1] -> logits (N, 11, H, W) for any H, W.

  dilated       the shipped net: 3x3 convs, dilations 1-2-4-8-4-2-1, full resolution throughout
  strided       the same widths and 3x3 kernels, but layers 1-3 downsample with stride 2 (to 1/8),
                layer 4 runs at 1/8, and layers 5-7 each first upsample x2 bilinearly back to the
                size of the matching downsampling stage; no skip connections. Bilinear upsampling has
                no weights, so it has exactly the parameters of ``dilated``: the seed's "same net,
                with downsampling" control.
  large-kernel  dilation 1 everywhere, kernel sizes 3-5-9-17-9-5-3: the same 45 px receptive field
                as ``dilated`` from dense kernels
  unet          ``smp.Unet`` with a ResNet-18 encoder (random init, 1 input channel), the mainstream
                encoder-decoder; the input is zero-padded at the bottom/right to a multiple of 32
                (64x84 -> 64x96) and the logits are cropped back, because its encoder downsamples 32x.

MACs, receptive fields and CPU throughput are measured on the built modules (forward hooks, input
gradients, interleaved timing), not taken from formulas, so they hold for every architecture alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from segapp.classes import NUM_CLASSES
from segapp.model import DilatedNet, NetConfig

ARCHS = ("dilated", "strided", "large-kernel", "unet")
LARGE_KERNELS = (3, 5, 9, 17, 9, 5, 3)


class StridedNet(nn.Module):
    """``DilatedNet``'s widths and kernels with a stride-2 encoder half and a bilinear-upsampling half.

    Layer ``i < down`` convolves with stride 2; layer ``i >= n - down`` first resizes its input to the
    size the matching downsampling layer received, so odd sizes round-trip exactly (64x84 -> 32x42 ->
    16x21 -> 8x11 -> 16x21 -> 32x42 -> 64x84).
    """

    def __init__(self, config: NetConfig = NetConfig(), down: int = 3):
        super().__init__()
        if not 0 <= down <= len(config.widths) // 2:
            raise ValueError(f"down must be between 0 and {len(config.widths) // 2}, got {down}")
        self.config, self.down = config, down
        blocks, c_in = [], config.in_channels
        for i, (w, k) in enumerate(zip(config.widths, config.kernel_sizes)):
            stride = 2 if i < down else 1
            blocks.append(nn.Sequential(
                nn.Conv2d(c_in, w, k, stride=stride, padding=(k - 1) // 2, bias=False),
                nn.BatchNorm2d(w),
                nn.ReLU(inplace=True),
            ))
            c_in = w
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(c_in, config.num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) -> logits (N, num_classes, H, W)."""
        sizes, n = [], len(self.blocks)
        for i, block in enumerate(self.blocks):
            if i < self.down:
                sizes.append(x.shape[-2:])
            if i >= n - self.down:
                x = F.interpolate(x, size=tuple(sizes.pop()), mode="bilinear", align_corners=False)
            x = block(x)
        return self.head(x)


class PaddedUnet(nn.Module):
    """``smp.Unet`` that accepts any H, W: zero-pads bottom/right to a multiple of 32, then crops.

    Zero is the background intensity of M2NIST, so the padding looks like more empty canvas.
    """

    def __init__(self, encoder: str = "resnet18", in_channels: int = 1, num_classes: int = NUM_CLASSES):
        super().__init__()
        import segmentation_models_pytorch as smp

        self.encoder_name = encoder
        self.net = smp.Unet(encoder, encoder_weights=None, in_channels=in_channels, classes=num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) -> logits (N, num_classes, H, W); computed at the padded size."""
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % 32, -w % 32
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return self.net(x)[..., :h, :w]


def build(arch: str, width: int = 48) -> nn.Module:
    """A freshly initialised network for ``arch`` (one of :data:`ARCHS`); ``width`` sizes the conv stacks.

    ``width`` changes ``dilated``, ``strided`` and ``large-kernel`` only (tests use narrow nets); the
    U-Net keeps smp's standard ResNet-18 encoder and decoder channels.
    """
    config = NetConfig(widths=(width,) * 7)
    builders: dict[str, Callable[[], nn.Module]] = {
        "dilated": lambda: DilatedNet(config),
        "strided": lambda: StridedNet(config),
        "large-kernel": lambda: DilatedNet(NetConfig(widths=(width,) * 7, dilations=(1,) * 7,
                                                     kernel_sizes=LARGE_KERNELS)),
        "unet": lambda: PaddedUnet("resnet18"),
        "unet-mobilenet": lambda: PaddedUnet("mobilenet_v2"),
    }
    if arch not in builders:
        raise ValueError(f"unknown architecture {arch!r}; choose from {', '.join(builders)}")
    return builders[arch]()


def describe(arch: str) -> str:
    """One line saying what ``arch`` is, for tables and --help."""
    return {
        "dilated": "3x3 convs, dilation 1-2-4-8-4-2-1, full resolution (shipped)",
        "strided": "3x3 convs, stride 2 x3 down to 1/8, bilinear x2 up x3, no skips",
        "large-kernel": "dense kernels 3-5-9-17-9-5-3, dilation 1, full resolution",
        "unet": "smp.Unet, ResNet-18 encoder, input padded to a multiple of 32",
        "unet-mobilenet": "smp.Unet, MobileNetV2 encoder, input padded to a multiple of 32",
    }[arch]


def num_params(model: nn.Module) -> int:
    """Trainable parameters, counted from the module."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def count_macs(model: nn.Module, height: int = 64, width: int = 84, in_channels: int = 1) -> int:
    """Multiply-accumulates of one forward pass on one ``height`` x ``width`` image.

    Counted with forward hooks on every Conv2d, ConvTranspose2d and Linear (bias adds, BatchNorm,
    ReLU, interpolation and padding are not counted: they are a few ops per activation, not per
    weight). Whatever the module really computes is counted, e.g. the U-Net's padded 64x96 input.
    """
    total = 0

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.ConvTranspose2d):  # every input pixel scatters a full kernel
            x = inputs[0]
            kh, kw = module.kernel_size
            total += x[0].numel() * (module.out_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += output[0].numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Linear):
            total += output[0].numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, in_channels, height, width))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return int(total)


def receptive_field(model: nn.Module, size: int = 192, in_channels: int = 1, seed: int = 0, tries: int = 8) -> int:
    """Side of the input window that can influence the centre output pixel, measured by gradients.

    Backpropagates the centre pixel's logits to ``tries`` random ``size`` x ``size`` inputs (eval mode) and
    measures the extent of the non-zero input gradient. A result equal to ``size`` means "at least
    the whole canvas" (the U-Net's ResNet-18 encoder sees far beyond a 64x84 image).
    """
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    # Several random inputs: in a narrow, freshly initialised net every ReLU on one input's path can be off, which
    # would zero that input's gradient and report a field of 0; the union over inputs is the field.
    x = torch.rand(tries, in_channels, size, size, generator=gen).requires_grad_(True)
    try:
        with torch.enable_grad():
            out = model(x)
            out[:, :, size // 2, size // 2].sum().backward()
    finally:
        model.train(was_training)
    grad = x.grad.abs().sum((0, 1))
    rows = torch.nonzero(grad.sum(1)).flatten()
    cols = torch.nonzero(grad.sum(0)).flatten()
    if len(rows) == 0:
        return 0
    return int(max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1)


def bf16_native() -> bool:
    """Whether this CPU has native bfloat16 (else bf16 timings measure an emulation)."""
    from segapp.runtime import bf16_is_fast

    return bf16_is_fast(torch.device("cpu"))


@torch.inference_mode()
def measure_throughput(archs: list[str], width: int = 48, batch: int = 64, repeats: int = 9,
                       log: Callable[[str], None] = print) -> dict:
    """Images/s of every architecture at one batch size, fp32 and bf16, interleaved, median of repeats.

    Interleaving (repeat 1: all archs, repeat 2: all archs, ...) in one process means load spikes on a
    shared machine hit every architecture alike, so the ratios hold even where absolute numbers drift.
    """
    from segapp.runtime import autocast

    device = torch.device("cpu")
    torch.manual_seed(0)
    models = {arch: build(arch, width).eval().to(memory_format=torch.channels_last) for arch in archs}
    x = torch.rand(batch, 1, 64, 84).contiguous(memory_format=torch.channels_last)
    dtypes = {"fp32": False, "bf16": True}
    times = {d: {arch: [] for arch in archs} for d in dtypes}
    for rep in range(-1, repeats):  # pass -1 is the warm-up, not recorded
        for d, amp in dtypes.items():
            for arch, model in models.items():
                t0 = time.perf_counter()
                with autocast(device, amp):
                    model(x)
                if rep >= 0:
                    times[d][arch].append(time.perf_counter() - t0)
        log(f"  throughput pass {rep + 1}/{repeats} done" if rep >= 0 else "  throughput warm-up done")
    res = {d: {arch: {"images_per_s": round(batch / statistics.median(ts), 1),
                      "seconds_per_batch": [round(t, 4) for t in ts]} for arch, ts in per.items()}
           for d, per in times.items()}
    ratios = {d: {f"dilated/{o}": round(per["dilated"]["images_per_s"] / per[o]["images_per_s"], 3)
                  for o in per if o != "dilated"} for d, per in res.items() if "dilated" in per}
    return {"batch": batch, "image": [64, 84], "repeats": repeats, "statistic": "median", "width": width,
            "mode": "eval + inference_mode, channels_last, CPU", "bf16_native": bf16_native(),
            "results": res, "ratios": ratios}
