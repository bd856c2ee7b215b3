"""Example networks used by tests, benchmarks and the demo (DESIGN.md §10, §11).

torchvision is not usable here (its wheels clash with the CPU torch), so the
classic architectures are written out by hand. They follow the originals'
layouts closely enough to exercise the same ONNX/IR features (BN, residual
adds, depthwise convs, ReLU6, concat, ceil-mode pooling, dropout, global
average pooling) while staying small enough for CPU tests.

Use :func:`build` to get a deterministic instance in eval mode::

    model = build("resnet8", seed=0)
    shape = MODELS["resnet8"][1]        # (1, 1, 28, 28)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = [
    "LeNet5",
    "VGGSmall",
    "ResNet8",
    "ResNet18",
    "MobileNetV2",
    "SqueezeNet",
    "MODELS",
    "build",
    "param_count",
]


class LeNet5(nn.Module):
    """LeNet-5 for 1x28x28 inputs (padding 2 on conv1 recreates the 32x32 original)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(120, 84)
        self.relu4 = nn.ReLU()
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.flatten(x)
        x = self.relu3(self.fc1(x))
        x = self.relu4(self.fc2(x))
        return self.fc3(x)


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    # bias=False: BN follows and would absorb it anyway (as in VGG-BN variants).
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class VGGSmall(nn.Module):
    """A small VGG-BN for 1x28x28: [16,16,M,32,32,M,64,M] then a linear classifier."""

    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _conv_bn_relu(1, w),
            _conv_bn_relu(w, w),
            nn.MaxPool2d(2),  # 14x14
            _conv_bn_relu(w, 2 * w),
            _conv_bn_relu(2 * w, 2 * w),
            nn.MaxPool2d(2),  # 7x7
            _conv_bn_relu(2 * w, 4 * w),
            nn.MaxPool2d(2),  # 3x3 (floor mode)
        )
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(4 * w * 3 * 3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.features(x)))


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock; 1x1 conv + BN shortcut when shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                nn.BatchNorm2d(cout),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def _stage(cin: int, cout: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [BasicBlock(cin, cout, stride)]
    layers += [BasicBlock(cout, cout) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNet8(nn.Module):
    """CIFAR-style ResNet-8 (3 stages x 1 BasicBlock, 16-32-64 channels) for 1x28x28."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _stage(16, 16, 1, 1)  # 28x28
        self.layer2 = _stage(16, 32, 1, 2)  # 14x14
        self.layer3 = _stage(32, 64, 1, 2)  # 7x7
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.avgpool(x)))


class ResNet18(nn.Module):
    """ResNet-18 with torchvision's block layout [2,2,2,2] (64..512) and a CIFAR stem.

    The stem is a single 3x3 stride-1 conv without max pooling, as is usual for
    32x32 inputs; about 11.2M parameters.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _stage(64, 64, 2, 1)
        self.layer2 = _stage(64, 128, 2, 2)
        self.layer3 = _stage(128, 256, 2, 2)
        self.layer4 = _stage(256, 512, 2, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.flatten(self.avgpool(x)))


def _make_divisible(v: float, divisor: int = 8) -> int:
    # Same rounding rule as the MobileNetV2 reference: never drop more than 10%.
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand -> 3x3 depthwise -> 1x1 linear projection."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [
                nn.Conv2d(cin, hidden, 1, bias=False),
                nn.BatchNorm2d(hidden),
                nn.ReLU6(inplace=True),
            ]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_res else out


class MobileNetV2(nn.Module):
    """MobileNetV2 for 3x32x32 with a width multiplier (default 0.35 to stay small).

    CIFAR adaptation: the stem and the first stride-2 stage use stride 1, so the
    feature map is 4x4 before global pooling instead of 1x1.
    """

    # (expansion t, channels c, repeats n, stride s) as in the paper, CIFAR strides.
    CFG = [
        (1, 16, 1, 1),
        (6, 24, 2, 1),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ]

    def __init__(self, num_classes: int = 10, width_mult: float = 0.35) -> None:
        super().__init__()
        cin = _make_divisible(32 * width_mult)
        # The last conv is not narrowed below 1280 in the paper; we do scale it
        # (keeps the classifier small) but never below 256.
        last = max(256, _make_divisible(1280 * width_mult))
        layers: list[nn.Module] = [
            nn.Sequential(
                nn.Conv2d(3, cin, 3, padding=1, bias=False),
                nn.BatchNorm2d(cin),
                nn.ReLU6(inplace=True),
            )
        ]
        for t, c, n, s in self.CFG:
            cout = _make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        layers.append(
            nn.Sequential(
                nn.Conv2d(cin, last, 1, bias=False),
                nn.BatchNorm2d(last),
                nn.ReLU6(inplace=True),
            )
        )
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(0.2)
        self.classifier = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(self.avgpool(self.features(x)))
        return self.classifier(self.dropout(x))


class Fire(nn.Module):
    """SqueezeNet Fire module: 1x1 squeeze, then concat of 1x1 and 3x3 expands."""

    def __init__(self, cin: int, squeeze: int, e1: int, e3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.squeeze_act = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, e1, 1)
        self.expand1x1_act = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, e3, 3, padding=1)
        self.expand3x3_act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_act(self.squeeze(x))
        return torch.cat(
            [self.expand1x1_act(self.expand1x1(x)), self.expand3x3_act(self.expand3x3(x))], 1
        )


class SqueezeNet(nn.Module):
    """SqueezeNet 1.1 layout for 3x32x32 (no BN, as in the original).

    The stem is a 3x3 stride-1 conv (CIFAR adaptation); pooling keeps the
    original's 3x3 stride-2 ceil_mode=True max pools, which for 32 -> 16 -> 8 -> 4
    produces windows that hang off the edge, the case the frontend must handle.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, ceil_mode=True),  # 32 -> 16
            Fire(64, 16, 64, 64),
            Fire(128, 16, 64, 64),
            nn.MaxPool2d(3, 2, ceil_mode=True),  # 16 -> 8
            Fire(128, 32, 128, 128),
            Fire(256, 32, 128, 128),
            nn.MaxPool2d(3, 2, ceil_mode=True),  # 8 -> 4
            Fire(256, 48, 192, 192),
            Fire(384, 48, 192, 192),
            Fire(384, 64, 256, 256),
            Fire(512, 64, 256, 256),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.5),
            nn.Conv2d(512, num_classes, 1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
        )
        self.flatten = nn.Flatten()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.classifier(self.features(x)))


# name -> (constructor, example input shape with batch 1)
MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "lenet5": (LeNet5, (1, 1, 28, 28)),
    "vgg_small": (VGGSmall, (1, 1, 28, 28)),
    "resnet8": (ResNet8, (1, 1, 28, 28)),
    "resnet18": (ResNet18, (1, 3, 32, 32)),
    "mobilenetv2": (MobileNetV2, (1, 3, 32, 32)),
    "squeezenet": (SqueezeNet, (1, 3, 32, 32)),
}


def param_count(model: nn.Module) -> int:
    """Number of trainable parameters (BN running stats excluded)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def _randomize_bn(model: nn.Module, gen: torch.Generator) -> None:
    # Fresh BN layers are the identity (mean 0, var 1, gamma 1, beta 0), so a
    # compiler that forgot to fold BN would still look right. Perturb every
    # statistic so that folding errors show up numerically.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            n = m.num_features
            m.weight.copy_(1.0 + 0.2 * (torch.rand(n, generator=gen) - 0.5) * 2)
            m.bias.copy_(0.1 * torch.randn(n, generator=gen))
            m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(n, generator=gen))


def build(name: str, seed: int = 0) -> nn.Module:
    """Instantiate example network ``name`` deterministically, in eval mode.

    Weights use PyTorch's default init under ``torch.manual_seed(seed)``; BN
    running statistics and affine parameters are then perturbed (see
    ``_randomize_bn``) so BN folding is exercised.
    """
    try:
        ctor, _ = MODELS[name]
    except KeyError:
        raise KeyError(f"unknown example model {name!r}; choose from {sorted(MODELS)}") from None
    # fork_rng: seed the init deterministically without clobbering the caller's RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ctor()
    gen = torch.Generator().manual_seed(seed + 1)
    _randomize_bn(model, gen)
    return model.eval()
