"""WaveNet (van den Oord et al. 2016) in plain PyTorch: a second implementation, written from the
paper (Sections 2.1-2.4, Figure 4) and not from nets/wavenet.net, for the zoo's count and
receptive-field tests.

Beside the pipeline, not in it. The widths the paper leaves open are the .net file's choices
(one stack of dilations 1 ... 512, residual 64, skip 256, a residual and a skip 1x1 of their
own, no residual 1x1 after the last layer, biases everywhere); everything else is the paper's.
Causality is done the textbook way: pad each width-2 convolution with `dilation` zeros on the
left only, so the output at t is a function of the input at t and before.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

DILATIONS = tuple(2**i for i in range(10))


class WaveNet(nn.Module):
    def __init__(
        self,
        residual: int = 64,
        skip: int = 256,
        levels: int = 256,
        dilations: tuple[int, ...] = DILATIONS,
    ) -> None:
        super().__init__()
        self.dilations = dilations
        self.causal = nn.Conv1d(levels, residual, 2)
        self.filter_gate = nn.ModuleList(
            nn.Conv1d(residual, 2 * residual, 2, dilation=d) for d in dilations
        )
        self.residual = nn.ModuleList(nn.Conv1d(residual, residual, 1) for _ in dilations[:-1])
        self.skip = nn.ModuleList(nn.Conv1d(residual, skip, 1) for _ in dilations)
        self.head1 = nn.Conv1d(skip, skip, 1)
        self.head2 = nn.Conv1d(skip, levels, 1)

    def forward(self, audio: Tensor) -> Tensor:
        x = self.causal(F.pad(audio, (1, 0)))
        skips = []
        for i, d in enumerate(self.dilations):
            f, g = self.filter_gate[i](F.pad(x, (d, 0))).chunk(2, dim=1)
            z = f.tanh() * g.sigmoid()  # eq. 2
            skips.append(self.skip[i](z))
            if i < len(self.residual):
                x = x + self.residual[i](z)
        out: Tensor = self.head2(F.relu(self.head1(F.relu(sum(skips[1:], skips[0])))))
        return out.softmax(dim=1)  # over the 256 mu-law levels, at every sample


def wavenet(length: int = 16_000) -> tuple[nn.Module, tuple[tuple[int, ...]]]:
    """The zoo's wavenet and its input: 256 one-hot mu-law levels x `length` samples."""
    return WaveNet(), ((256, length),)
