"""PaCa-ViT: Patch-to-Cluster Attention in Vision Transformers (Grainger et al., CVPR 2023).

Written from ``docs/paca-vit.md`` to be functionally identical to the authors' model
(iVMCL/PaCaViT): same state_dict keys and shapes, same order of operations, eps values and
softmax axes, so their published checkpoints load by key and give the same outputs.

Layout of the model (tokens are B×N×C, N = h·w row-major, which is the NHWC memory layout:
a token tensor viewed as B×C×h×w is a channels_last tensor, so no copy is needed to run the
convolutions of the model on tokens)::

    patch_embed          two stride-2 3×3 convs + LayerNorm2d                 stride 4
    [paca_teacher]       ConvMixer + FPN producing every stage's assignment z (teacher variants)
    stage1, norm1        PaCa blocks, LayerNorm
    transition1          stride-2 3×3 conv + LayerNorm2d                      stride 8
    stage2 .. norm4      ...                                                  strides 16, 32
    head                 mean over tokens -> Linear

A PaCa block (pre-norm): ``x = x + attn(norm1_before(x)); x = x + mlp(norm2_before(x))``.
The PaCa layer pools the N patch tokens into M cluster tokens with a learned soft assignment
z (B×M×N, softmax over N), then every patch attends to the M clusters: O(N·M) not O(N²).

Fast by default: attention runs through ``F.scaled_dot_product_attention`` (no B×heads×N×M
map is materialised), the cluster pooling is one batched matmul, the 1×1 convolutions of the
clustering module run as matmuls on the tokens and depthwise convolutions run on channels_last
views of the tokens. ``model.set_attn_impl("explicit")`` switches every PaCa layer to the
reference formulation (materialised softmax(q kᵀ/√d) v), and ``model.forward_with_maps(x)``
returns the attention maps and assignments of every block for inspection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from timm.models import generate_default_cfgs, register_model
from timm.models._pretrained import PretrainedCfg
from torch import nn
from torch.utils.checkpoint import checkpoint

from ._family import imagenet_cfg, init_transformer_weights, pop_timm_args

__all__ = [
    "PaCaViT",
    "PaCaBlock",
    "PaCaLayer",
    "P2CConv2d",
    "P2CMlp",
    "PaCaTeacher",
    "MODEL_NAMES",
    "VARIANTS",
    "ATTN_IMPLS",
]

ATTN_IMPLS = ("sdpa", "explicit")
LN_EPS = 1e-6


# --------------------------------------------------------------------------------------------
# Small helpers: token <-> map views, channels-first LayerNorm
# --------------------------------------------------------------------------------------------


def tokens_to_map(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """B×N×C tokens -> B×C×h×w, a channels_last view (no copy for contiguous tokens).

    Built as view + permute so the strides are exactly channels_last ones: oneDNN then runs
    the (depthwise) convolutions natively on NHWC instead of reordering to a blocked layout.
    """
    return x.reshape(x.shape[0], h, w, x.shape[-1]).permute(0, 3, 1, 2)


def map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """B×C×h×w -> B×N×C tokens (a view when ``x`` is channels_last, a copy otherwise)."""
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1])


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a B×C×h×w map (timm's ``LayerNorm2d``), returning tokens.

    Normalises ``x.permute(0, 2, 3, 1)``: for a channels_last map (what the convolutions of
    this model produce) that permute is free and the result is the B×N×C token tensor.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # B C h w -> B N C
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.flatten(1, 2)


# --------------------------------------------------------------------------------------------
# Stem and transitions
# --------------------------------------------------------------------------------------------


class PatchEmbed(nn.Module):
    """Stride-4 stem: Conv 3->C/2 (3×3, s2) -> Conv C/2->C (3×3, s2) -> LayerNorm2d. Keys ``proj.{0,1}``, ``norm``."""

    def __init__(self, in_chans: int = 3, embed_dim: int = 96):
        super().__init__()
        self.proj = nn.Sequential(
            nn.Conv2d(in_chans, embed_dim // 2, 3, 2, 1),
            nn.Conv2d(embed_dim // 2, embed_dim, 3, 2, 1),
        )
        self.norm = LayerNorm2d(embed_dim, eps=LN_EPS)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        h, w = x.shape[-2:]
        return self.norm(x), h, w


class Transition(nn.Module):
    """Stride-2 downsampling between stages: Conv 3×3 s2 -> LayerNorm2d. Keys ``proj``, ``norm``."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_dim, out_dim, 3, 2, 1)
        self.norm = LayerNorm2d(out_dim, eps=LN_EPS)

    def forward(self, x: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, int, int]:
        x = self.proj(tokens_to_map(x, h, w))
        h, w = x.shape[-2:]
        return self.norm(x), h, w


# --------------------------------------------------------------------------------------------
# Clustering modules: tokens -> assignment logits
# --------------------------------------------------------------------------------------------


class P2CConv2d(nn.Module):
    """Conv clustering: dw7×7 -> GELU -> 1×1 -> GELU -> 1×1 (no bias) to M channels.

    Keys ``clustering.{0,2,4}`` (1 and 3 are the GELUs). Returns the logits B×M×N. The
    depthwise conv runs on the channels_last view of the tokens; the 1×1 convolutions run as
    matmuls with the conv weights (the same function), the last one written straight into
    the B×M×N layout in which the softmax over N is contiguous.
    """

    def __init__(self, dim: int, num_clusters: int, kernel_size: int = 7, **kwargs: Any):
        super().__init__()
        self.clustering = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size, 1, kernel_size // 2, groups=dim, bias=True),
            nn.GELU(),
            nn.Conv2d(dim, dim, 1, 1, 0, bias=True),
            nn.GELU(),
            nn.Conv2d(dim, num_clusters, 1, 1, 0, bias=False),
        )

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:  # B N C -> B M N
        dw, act1, pw, act2, out = self.clustering
        y = act1(map_to_tokens(dw(tokens_to_map(x, h, w))))  # B N C
        y = act2(F.linear(y, pw.weight.flatten(1), pw.bias))
        return linear_channels_first(y, out.weight)


def linear_channels_first(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """A linear layer / 1×1 conv on tokens B×N×Cin, output channels-first B×Cout×N (one bmm)."""
    y = torch.bmm(weight.flatten(1).expand(x.shape[0], -1, -1), x.transpose(1, 2))
    return y if bias is None else y.add_(bias[:, None])


class P2CMlp(nn.Module):
    """MLP clustering: Linear C->4C -> GELU -> Linear 4C->M. Keys ``clustering.{0,2}``. Returns B×M×N."""

    def __init__(self, dim: int, num_clusters: int, mlp_ratio: float = 4.0, **kwargs: Any):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.clustering = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, num_clusters))

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:  # B N C -> B M N
        fc1, act, fc2 = self.clustering
        return linear_channels_first(act(fc1(x)), fc2.weight, fc2.bias)


CLUSTERING_TYPES = {"conv": P2CConv2d, "mlp": P2CMlp}


# --------------------------------------------------------------------------------------------
# The PaCa layer
# --------------------------------------------------------------------------------------------


class PaCaLayer(nn.Module):
    """Patch-to-cluster attention.

    ``forward(x, h, w, z)``: x the normalised tokens B×N×C; z the assignment handed on by the
    previous block of the stage (B×M×N, or None). Returns (out B×N×C, z used here).

    1. If this layer owns a clustering module: z = softmax over N of its logits.
    2. Clusters c = cluster_norm(z @ x) (B×M×C); with M = 0, c = x (plain self-attention).
    3. softmax(q kᵀ/√d) v with q from x and k, v from c, heads of d = C/num_heads; then proj.

    ``attn_impl``: "sdpa" (fast) or "explicit" (reference, materialises the B×heads×N×M map).
    With ``keep_maps`` set, the layer keeps ``attn_map`` (explicit path only) and ``assignment``
    (z, B×M×N) of its last forward.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        num_clusters: int = 100,
        onsite_clustering: bool = True,
        clustering_type: str = "conv",
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
    ):
        super().__init__()
        assert dim % num_heads == 0, f"dim {dim} not divisible by num_heads {num_heads}"
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.num_clusters = num_clusters
        self.onsite_clustering = onsite_clustering and num_clusters > 0
        if num_clusters > 0:
            self.cluster_norm = nn.LayerNorm(dim, eps=LN_EPS)
            if self.onsite_clustering:
                self.clustering = CLUSTERING_TYPES[clustering_type](dim, num_clusters, mlp_ratio=mlp_ratio)
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.k = nn.Linear(dim, dim, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.attn_impl = "sdpa"
        self.keep_maps = False
        self.attn_map: torch.Tensor | None = None
        self.assignment: torch.Tensor | None = None

    def forward(
        self, x: torch.Tensor, h: int, w: int, z: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, N, C = x.shape
        if self.num_clusters > 0:
            if self.onsite_clustering:
                z = self.clustering(x, h, w).softmax(dim=-1)  # B×M×N, softmax over the N patches
            elif z is None:
                raise RuntimeError(
                    "PaCaLayer without its own clustering needs the assignment z of a previous block"
                )
            c = self.cluster_norm(torch.matmul(z, x))  # B×M×C, each cluster a convex combination of patches
        else:
            c = x
        M = c.shape[1]
        q = self.q(x).view(B, N, self.num_heads, self.head_dim).transpose(1, 2)  # B h N d
        k = self.k(c).view(B, M, self.num_heads, self.head_dim).transpose(1, 2)  # B h M d
        v = self.v(c).view(B, M, self.num_heads, self.head_dim).transpose(1, 2)
        if self.attn_impl == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v)
            attn = None
        else:
            attn = (torch.matmul(q, k.transpose(-2, -1)) * self.scale).softmax(dim=-1)  # B h N M
            out = torch.matmul(attn, v)
        if self.keep_maps:
            self.attn_map = attn
            self.assignment = z if self.num_clusters > 0 else None
        out = out.transpose(1, 2).reshape(B, N, C)
        return self.proj(out), z

    def extra_repr(self) -> str:
        return (
            f"num_heads={self.num_heads}, num_clusters={self.num_clusters}, "
            f"onsite_clustering={self.onsite_clustering}, attn_impl={self.attn_impl!r}"
        )


# --------------------------------------------------------------------------------------------
# MLP and block
# --------------------------------------------------------------------------------------------


class DWConv(nn.Module):
    """Depthwise 3×3 conv (key ``dwconv``) on tokens, computed on their channels_last view."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, bias=True, groups=dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:  # B N C -> B N C
        return map_to_tokens(self.dwconv(tokens_to_map(x, h, w)))


class Mlp(nn.Module):
    """fc1 -> (h + dwconv(h)) -> GELU -> fc2. Keys ``fc1``, ``dwconv.dwconv``, ``fc2``."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.dwconv = DWConv(hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = self.fc1(x)
        x = self.dwconv(x, h, w).add_(x)  # h + dwconv(h), in place on the conv output
        return self.fc2(self.act(x))


class PaCaBlock(nn.Module):
    """Pre-norm block: attention to clusters, then the conv MLP, each with a residual."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        num_clusters: int,
        onsite_clustering: bool,
        clustering_type: str = "conv",
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
    ):
        super().__init__()
        self.norm1_before = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = PaCaLayer(
            dim,
            num_heads,
            num_clusters=num_clusters,
            onsite_clustering=onsite_clustering,
            clustering_type=clustering_type,
            mlp_ratio=mlp_ratio,
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2_before = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(
        self, x: torch.Tensor, h: int, w: int, z: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        a, z = self.attn(self.norm1_before(x), h, w, z)
        x = x + self.drop_path(a)
        x = x + self.drop_path(self.mlp(self.norm2_before(x), h, w))
        return x, z


# --------------------------------------------------------------------------------------------
# The ConvMixer "teacher": assignments for every stage from a small CNN on the stem output
# --------------------------------------------------------------------------------------------


class Residual(nn.Module):
    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fn(x)


def convmixer_unit(dim: int, kernel_size: int = 7) -> nn.Sequential:
    """Residual(dw k×k 'same' -> GELU -> BN) -> 1×1 conv -> GELU -> BN."""
    return nn.Sequential(
        Residual(
            nn.Sequential(
                nn.Conv2d(dim, dim, kernel_size, groups=dim, padding=kernel_size // 2),
                nn.GELU(),
                nn.BatchNorm2d(dim),
            )
        ),
        nn.Conv2d(dim, dim, 1),
        nn.GELU(),
        nn.BatchNorm2d(dim),
    )


class BlurConv2d(nn.Module):
    """Anti-aliased stride-2 conv: fixed depthwise [1,2,1]ᵀ[1,2,1]/16 blur (stride 1), then a 3×3 s2 conv."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        f = torch.tensor([1.0, 2.0, 1.0])
        f = (f[:, None] * f[None, :]) / 16.0
        self.register_buffer("blur_filter", f.expand(in_dim, 1, 3, 3).clone(), persistent=True)
        self.conv = nn.Conv2d(in_dim, out_dim, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.blur_filter, stride=1, padding=1, groups=x.shape[1])
        return self.conv(x)


class PaCaTeacher(nn.Module):
    """ConvMixer backbone + FPN top-down path; ``to_clusters{s}`` gives z_s (softmax over N).

    ``forward(x)`` on the stem output (B×C0×h×w) returns (outs, zs): the four teacher stage maps
    (added to the backbone's stage outputs before ``norm{s}``) and the four assignments
    (B×M_s×N_s, None where M_s = 0).
    """

    def __init__(
        self, dims: Sequence[int], depths: Sequence[int], clusters: Sequence[int], kernel_size: int = 7
    ):
        super().__init__()
        self.num_stages = len(dims)
        self.clusters = tuple(clusters)
        for s in range(self.num_stages):
            setattr(
                self,
                f"block{s + 1}",
                nn.Sequential(*[convmixer_unit(dims[s], kernel_size) for _ in range(depths[s])]),
            )
            if s < self.num_stages - 1:
                setattr(
                    self,
                    f"transition{s + 1}",
                    nn.Sequential(BlurConv2d(dims[s], dims[s + 1]), nn.GELU(), nn.BatchNorm2d(dims[s + 1])),
                )
                setattr(
                    self,
                    f"lateral{s + 1}",
                    nn.Sequential(nn.Conv2d(dims[s + 1], dims[s], 1), nn.GELU(), nn.BatchNorm2d(dims[s])),
                )
                setattr(self, f"fpn{s + 1}", convmixer_unit(dims[s], kernel_size))
            if clusters[s] > 0:
                setattr(self, f"to_clusters{s + 1}", nn.Conv2d(dims[s], clusters[s], 1))

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        outs = []
        for s in range(self.num_stages):
            x = getattr(self, f"block{s + 1}")(x)
            outs.append(x)
            if s < self.num_stages - 1:
                x = getattr(self, f"transition{s + 1}")(x)
        feats = [outs[-1]]
        for s in range(self.num_stages - 2, -1, -1):  # top-down: 3, 2, 1
            u = F.interpolate(feats[0], size=outs[s].shape[-2:], mode="bilinear", align_corners=False)
            u = getattr(self, f"lateral{s + 1}")(u)
            feats.insert(0, getattr(self, f"fpn{s + 1}")(outs[s] + u))
        zs: list[torch.Tensor | None] = []
        for s in range(self.num_stages):
            if self.clusters[s] > 0:
                zs.append(getattr(self, f"to_clusters{s + 1}")(feats[s]).flatten(2).softmax(dim=-1))
            else:
                zs.append(None)
        return outs, zs


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


class PaCaViT(nn.Module):
    """PaCa-ViT backbone with classification head, or four feature maps (``features_only``).

    ``clusters``: M per stage (0: plain MHSA in that stage). ``onsite``: which blocks own a
    clustering module: "stage" (block 0 of each stage with M > 0), an int i (every i-th block;
    1 = block-wise), or "teacher" (none: a ConvMixer teacher gives every stage's z).
    """

    def __init__(
        self,
        embed_dims: Sequence[int] = (96, 192, 320, 384),
        num_heads: Sequence[int] = (2, 4, 8, 16),
        depths: Sequence[int] = (2, 2, 4, 2),
        clusters: Sequence[int] = (100, 100, 100, 0),
        clustering_type: str = "conv",
        onsite: str | int = "stage",
        teacher_depths: Sequence[int] | None = None,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.1,
        num_classes: int = 1000,
        in_chans: int = 3,
        features_only: bool = False,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        img_size: int | Sequence[int] | None = None,
        **kwargs: Any,
    ):
        super().__init__()
        if kwargs:
            raise TypeError(f"PaCaViT got unexpected arguments: {', '.join(sorted(kwargs))}")
        self.num_stages = len(embed_dims)
        clusters = tuple(int(m) for m in clusters)
        if len(clusters) != self.num_stages or any(m < 0 for m in clusters):
            raise ValueError(f"clusters must be {self.num_stages} non-negative ints, got {list(clusters)}")
        if clustering_type not in CLUSTERING_TYPES:
            raise ValueError(
                f"clustering_type must be one of {sorted(CLUSTERING_TYPES)}, got {clustering_type!r}"
            )
        self.embed_dims = tuple(embed_dims)
        self.depths = tuple(depths)
        self.clusters = clusters
        self.onsite = onsite
        self.features_only = features_only
        self.out_indices = tuple(out_indices)
        self.img_size = img_size  # accepted for API symmetry; the model takes any input size
        self.num_classes = 0 if features_only else num_classes
        self.num_features = self.head_hidden_size = embed_dims[-1]

        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])
        self.paca_teacher = PaCaTeacher(embed_dims, teacher_depths, clusters) if onsite == "teacher" else None

        n_blocks = sum(depths)  # linear stochastic depth (plain Python: builds on the meta device too)
        dpr = [drop_path_rate * i / max(n_blocks - 1, 1) for i in range(n_blocks)]
        cur = 0
        for s in range(self.num_stages):
            blocks = nn.ModuleList(
                PaCaBlock(
                    embed_dims[s],
                    num_heads[s],
                    num_clusters=clusters[s],
                    onsite_clustering=self._owns_clustering(j),
                    clustering_type=clustering_type,
                    mlp_ratio=mlp_ratio,
                    drop_path=dpr[cur + j],
                )
                for j in range(depths[s])
            )
            cur += depths[s]
            setattr(self, f"stage{s + 1}", blocks)
            setattr(self, f"norm{s + 1}", nn.LayerNorm(embed_dims[s], eps=LN_EPS))
            if s < self.num_stages - 1:
                setattr(self, f"transition{s + 1}", Transition(embed_dims[s], embed_dims[s + 1]))

        if features_only:
            self.head = None
        else:
            self.head = nn.Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.feature_info = [
            dict(num_chs=embed_dims[s], reduction=4 * 2**s, module=f"norm{s + 1}") for s in self.out_indices
        ]
        self.apply(self._init_weights)

    def _owns_clustering(self, j: int) -> bool:
        if self.onsite == "teacher":
            return False
        if self.onsite == "stage":
            return j == 0
        return j % int(self.onsite) == 0

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        init_transformer_weights(m)
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, (2.0 / fan_out) ** 0.5)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    # ---- inspection switches -----------------------------------------------------------------

    def paca_layers(self) -> list[tuple[int, int, PaCaLayer]]:
        """(stage, block, layer) for every PaCa layer, stages numbered from 1."""
        return [
            (s + 1, j, blk.attn)
            for s in range(self.num_stages)
            for j, blk in enumerate(getattr(self, f"stage{s + 1}"))
        ]

    def set_attn_impl(self, impl: str = "sdpa", keep_maps: bool | None = None) -> PaCaViT:
        """Switch every PaCa layer: ``sdpa`` (fast, default) or ``explicit`` (reference path)."""
        if impl not in ATTN_IMPLS:
            raise ValueError(f"attn impl must be one of {ATTN_IMPLS}, got {impl!r}")
        for _, _, layer in self.paca_layers():
            layer.attn_impl = impl
            if keep_maps is not None:
                layer.keep_maps = keep_maps
                if not keep_maps:
                    layer.attn_map = layer.assignment = None
        return self

    @torch.no_grad()
    def forward_with_maps(self, x: torch.Tensor) -> tuple[Any, list[dict[str, Any]]]:
        """Run the explicit path and return (output, maps): one dict per block with ``stage``,
        ``block``, ``hw``, ``attn`` (B×heads×N×M) and ``z`` (B×M×N, None where M = 0)."""
        layers = self.paca_layers()
        saved = [(layer.attn_impl, layer.keep_maps) for _, _, layer in layers]
        hws: dict[int, tuple[int, int]] = {}
        hooks = [
            getattr(self, f"stage{s + 1}")[0].register_forward_pre_hook(
                lambda m, args, s=s: hws.__setitem__(s + 1, (args[1], args[2]))
            )
            for s in range(self.num_stages)
        ]
        try:
            self.set_attn_impl("explicit", keep_maps=True)
            out = self(x)
            maps = [
                dict(stage=s, block=j, hw=hws[s], attn=layer.attn_map, z=layer.assignment)
                for s, j, layer in layers
            ]
        finally:
            for hk in hooks:
                hk.remove()
            for (_, _, layer), (impl, keep) in zip(layers, saved, strict=True):
                layer.attn_impl, layer.keep_maps = impl, keep
                layer.attn_map = layer.assignment = None
        return out, maps

    # ---- loading -----------------------------------------------------------------------------

    def checkpoint_ignore(self, key: str) -> bool:
        """Checkpoint keys this model deliberately does not take.

        The classifier in features mode, and the clustering of stages that a ``clusters``
        override turned into plain attention (M = 0): their ``attn.clustering.*``,
        ``attn.cluster_norm.*`` and the teacher's ``to_clusters{s}.*``.
        """
        if self.features_only and key.startswith("head."):
            return True
        for s, m in enumerate(self.clusters):
            if m > 0:
                continue
            if key.startswith(f"paca_teacher.to_clusters{s + 1}."):
                return True
            if key.startswith(f"stage{s + 1}.") and (
                ".attn.clustering." in key or ".attn.cluster_norm." in key
            ):
                return True
        return False

    def checkpoint_resizable(self, key: str) -> bool:
        """Checkpoint keys whose shape may differ in features mode (kept at fresh init, reported):
        the cluster count M is an option (ImageNet 100, dense tasks 200), so the clustering's
        and the teacher's M-sized tensors. Any other shape mismatch is an error."""
        return ".attn.clustering." in key or ".attn.cluster_norm." in key or ".to_clusters" in key

    def get_classifier(self) -> nn.Module | None:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    grad_checkpointing = False

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in backward (non-reentrant ``torch.utils.checkpoint``)."""
        self.grad_checkpointing = bool(enable)

    # ---- forward -----------------------------------------------------------------------------

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four stage outputs after ``norm{s}`` as B×C×h×w maps (channels_last strides)."""
        # channels_last throughout: every conv output is then already the B×N×C token tensor
        x, h, w = self.patch_embed(x.contiguous(memory_format=torch.channels_last))
        teacher_outs, teacher_z = None, None
        if self.paca_teacher is not None:
            teacher_outs, teacher_z = self.paca_teacher(tokens_to_map(x, h, w))
        outs = []
        for s in range(self.num_stages):
            if s > 0:
                x, h, w = getattr(self, f"transition{s}")(x, h, w)
            z = teacher_z[s] if teacher_z is not None else None  # reset at every stage start
            for blk in getattr(self, f"stage{s + 1}"):
                if self.grad_checkpointing and torch.is_grad_enabled():
                    x, z = checkpoint(blk, x, h, w, z, use_reentrant=False)
                else:
                    x, z = blk(x, h, w, z)
            if teacher_outs is not None:
                x = x + map_to_tokens(teacher_outs[s])
            x = getattr(self, f"norm{s + 1}")(x)
            outs.append(tokens_to_map(x, h, w))
        return outs

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.flatten(2).mean(dim=2)  # mean over tokens
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        feats = self.forward_features(x)
        if self.features_only:
            return [feats[i] for i in self.out_indices]
        return self.forward_head(feats[-1])


# --------------------------------------------------------------------------------------------
# Variants, pretrained configs, registration
# --------------------------------------------------------------------------------------------

_ARCHS = {
    "tiny": dict(
        embed_dims=(96, 192, 320, 384), num_heads=(2, 4, 8, 16), depths=(2, 2, 4, 2), drop_path_rate=0.1
    ),
    "small": dict(
        embed_dims=(96, 192, 320, 384), num_heads=(2, 4, 8, 16), depths=(3, 3, 10, 3), drop_path_rate=0.1
    ),
    "base": dict(
        embed_dims=(96, 192, 384, 512), num_heads=(2, 4, 8, 16), depths=(3, 3, 18, 3), drop_path_rate=0.5
    ),
}


def _variant(
    arch: str, clustering: str, clusters: tuple[int, ...], onsite: str | int = "stage", **over: Any
) -> dict:
    cfg = dict(_ARCHS[arch], clustering_type=clustering, clusters=clusters, onsite=onsite)
    cfg.update(over)
    return cfg


_C100 = (100, 100, 100, 100)


def _convmixer(arch: str, depths: tuple[int, ...], teacher_depths: tuple[int, ...]) -> dict:
    """A ConvMixer-teacher variant: 100 clusters in every stage, drop path 0.1."""
    return _variant(
        arch, "conv", _C100, "teacher", depths=depths, teacher_depths=teacher_depths, drop_path_rate=0.1
    )


VARIANTS: dict[str, dict[str, Any]] = {
    "pacavit_tiny_p2cconv_100_0": _variant("tiny", "conv", (100, 100, 100, 0)),
    "pacavit_small_p2cconv_100_0": _variant("small", "conv", (100, 100, 100, 0)),
    "pacavit_base_p2cconv_100_0": _variant("base", "conv", (100, 100, 100, 0)),
    "pacavit_small_p2cmlp_100_0": _variant("small", "mlp", (100, 100, 100, 0)),
    "pacavit_small_p2cconv_2_0": _variant("small", "conv", (2, 2, 2, 0)),
    "pacavit_small_p2cconv_49_0": _variant("small", "conv", (49, 49, 49, 0)),
    "pacavit_small_p2cconv_49_100": _variant("small", "conv", (49, 64, 81, 100)),
    "pacavit_small_p2cconv_100_49": _variant("small", "conv", (100, 81, 64, 49)),
    "pacavit_small_p2cconv_100": _variant("small", "conv", _C100),
    "pacavit_small_p2cconv_100_blockwise": _variant("small", "conv", _C100, onsite=1),
    "pacavit_convmixer_tiny_100": _convmixer("tiny", (2, 2, 2, 2), (2, 2, 2, 2)),
    "pacavit_convmixer_small_100": _convmixer("small", (3, 3, 7, 3), (2, 2, 2, 2)),
    "pacavit_convmixer_base_100": _convmixer("base", (3, 3, 16, 3), (2, 2, 4, 2)),
}

MODEL_NAMES: list[str] = list(VARIANTS)


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return imagenet_cfg(crop_pct=0.9, first_conv="patch_embed.proj.0", license="see iVMCL/PaCaViT", **kwargs)


default_cfgs = generate_default_cfgs({name: _cfg() for name in MODEL_NAMES})


def _create_paca_vit(variant: str, pretrained: bool = False, **kwargs: Any) -> PaCaViT:
    if pretrained:
        raise RuntimeError(
            f"{variant}: pretrained=True is not supported (no model hub here); download the authors' "
            f"IMNET_224_{variant}.pth and pass it as pacabench.models.create_model(..., checkpoint=PATH)"
        )
    pretrained_cfg, overlay = pop_timm_args(kwargs, "global_pool", "drop_rate")  # timm-generic, unused here
    cfg = dict(VARIANTS[variant])
    if kwargs.get("clusters") is not None:
        cfg["clusters"] = tuple(kwargs.pop("clusters"))
    kwargs.pop("clusters", None)
    cfg.update(kwargs)
    model = PaCaViT(**cfg)
    if isinstance(pretrained_cfg, PretrainedCfg):
        pcfg = pretrained_cfg.to_dict()
    elif isinstance(pretrained_cfg, dict):
        pcfg = dict(pretrained_cfg)
    else:
        pcfg = default_cfgs[variant].default.to_dict()
    if overlay:
        pcfg.update(overlay)
    if model.features_only:
        pcfg.pop("classifier", None)
        pcfg.pop("num_classes", None)
    model.pretrained_cfg = model.default_cfg = pcfg
    return model


@register_model
def pacavit_tiny_p2cconv_100_0(pretrained=False, **kwargs) -> PaCaViT:
    return _create_paca_vit("pacavit_tiny_p2cconv_100_0", pretrained, **kwargs)


@register_model
def pacavit_small_p2cconv_100_0(pretrained=False, **kwargs) -> PaCaViT:
    return _create_paca_vit("pacavit_small_p2cconv_100_0", pretrained, **kwargs)


@register_model
def pacavit_base_p2cconv_100_0(pretrained=False, **kwargs) -> PaCaViT:
    return _create_paca_vit("pacavit_base_p2cconv_100_0", pretrained, **kwargs)


@register_model
def pacavit_small_p2cmlp_100_0(pretrained=False, **kwargs) -> PaCaViT:
    return _create_paca_vit("pacavit_small_p2cmlp_100_0", pretrained, **kwargs)


@register_model
def pacavit_small_p2cconv_2_0(pretrained=False, **kwargs) -> PaCaViT:
    return _create_paca_vit("pacavit_small_p2cconv_2_0", pretrained, **kwargs)


@register_model
def pacavit_small_p2cconv_49_0(pretrained=False, **kwargs) -> PaCaViT:
    return _create_paca_vit("pacavit_small_p2cconv_49_0", pretrained, **kwargs)


@register_model
def pacavit_small_p2cconv_49_100(pretrained=False, **kwargs) -> PaCaViT:
    return _create_paca_vit("pacavit_small_p2cconv_49_100", pretrained, **kwargs)


@register_model
def pacavit_small_p2cconv_100_49(pretrained=False, **kwargs) -> PaCaViT:
    return _create_paca_vit("pacavit_small_p2cconv_100_49", pretrained, **kwargs)


@register_model
def pacavit_small_p2cconv_100(pretrained=False, **kwargs) -> PaCaViT:
    return _create_paca_vit("pacavit_small_p2cconv_100", pretrained, **kwargs)


@register_model
def pacavit_small_p2cconv_100_blockwise(pretrained=False, **kwargs) -> PaCaViT:
    return _create_paca_vit("pacavit_small_p2cconv_100_blockwise", pretrained, **kwargs)


@register_model
def pacavit_convmixer_tiny_100(pretrained=False, **kwargs) -> PaCaViT:
    return _create_paca_vit("pacavit_convmixer_tiny_100", pretrained, **kwargs)


@register_model
def pacavit_convmixer_small_100(pretrained=False, **kwargs) -> PaCaViT:
    return _create_paca_vit("pacavit_convmixer_small_100", pretrained, **kwargs)


@register_model
def pacavit_convmixer_base_100(pretrained=False, **kwargs) -> PaCaViT:
    return _create_paca_vit("pacavit_convmixer_base_100", pretrained, **kwargs)
