"""PVT v1 (Pyramid Vision Transformer, Wang et al., ICCV 2021): tiny, small, medium, large.

timm carries PVTv2 only, so pacabench has its own PVT v1, written from
``shared/docs/pvt-v1.md``. It is functionally identical to the authors' classification model
(``whai362/PVT``, classification/pvt.py): same module and parameter names (their ImageNet
checkpoints load strictly by key), same LayerNorm eps values (1e-5 in the patch embeddings and
the spatial-reduction norm, 1e-6 in the blocks and the final norm), same K/V split of ``kv``
(first C channels are K), same stage-4 cls token, same logits.

One deliberate difference: position embeddings are resized per stage against that stage's own
224 grid (bilinear, align_corners=False, no antialias; the stage-4 cls entry kept in front),
and not resized at all where the grid already matches. The authors' code decides by comparing
every stage with the stage-1 token count, which crashes at 448×448 and mis-adds at sizes whose
stage-1 grid has 3136 tokens in another shape; wherever theirs is correct (224, 256×320, ...)
the two agree.

``features_only=True`` gives the authors' dense-prediction backbone (their detection/pvt.py):
the four stage maps, stage 4 run without the cls token, no final norm or head; the cls token,
norm and head of a classification checkpoint are ignored on load.

Names registered with timm (``import pacabench.models`` or this module): ``pvt_tiny``,
``pvt_small``, ``pvt_medium``, ``pvt_large``. ``pretrained=True`` is refused: weights come from
local files, ``pacabench.models.create_model(name, checkpoint=PATH)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from timm.layers import DropPath, trunc_normal_
from timm.models import generate_default_cfgs, register_model
from timm.models._builder import resolve_pretrained_cfg
from timm.models._features import FeatureInfo
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..spec.sizes import as_hw
from ._family import imagenet_cfg, init_transformer_weights, pop_timm_args

__all__ = [
    "MODEL_NAMES",
    "PatchEmbed",
    "Attention",
    "Mlp",
    "Block",
    "PyramidVisionTransformer",
    "pvt_tiny",
    "pvt_small",
    "pvt_medium",
    "pvt_large",
]

MODEL_NAMES = ("pvt_tiny", "pvt_small", "pvt_medium", "pvt_large")

# The input size the position embeddings are stored for (the authors' checkpoints: 224).
PRETRAIN_SIZE = 224


class PatchEmbed(nn.Module):
    """Non-overlapping patches: Conv2d(kernel = stride = patch) → tokens → LayerNorm (eps 1e-5)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)  # eps 1e-5, as the authors'

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x = self.proj(x)
        hw = (x.shape[2], x.shape[3])
        x = self.norm(x.flatten(2).transpose(1, 2))
        return x, hw


class Attention(nn.Module):
    """Spatial-reduction attention.

    q = ``q``(x); if ``sr_ratio`` > 1 the keys/values come from the tokens reduced by ``sr``
    (Conv2d, kernel = stride = sr_ratio) and ``norm`` (LayerNorm eps 1e-5); ``kv`` gives 2C
    channels per token laid out (2, heads, head_dim): the first C are K, the last C are V.
    softmax(q kᵀ · scale) v through ``scaled_dot_product_attention``, then ``proj``.
    ``attn_impl = "explicit"`` computes it as the authors' code does instead, materialising the
    B×heads×N×M attention map: the quadratic memory of spatial-reduction attention.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = False,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        sr_ratio: int = 1,
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = qk_scale or self.head_dim**-0.5
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.sr_ratio = sr_ratio
        self.attn_impl = "sdpa"  # or "explicit" (set_attn_impl on the model)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim)  # eps 1e-5, as the authors'

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        B, N, C = x.shape
        q = self.q(x).reshape(B, N, self.num_heads, self.head_dim).transpose(1, 2)
        if self.sr_ratio > 1:
            H, W = hw
            x = x.transpose(1, 2).reshape(B, C, H, W)
            x = self.norm(self.sr(x).flatten(2).transpose(1, 2))
        kv = self.kv(x).reshape(B, -1, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        k, v = kv.unbind(0)
        if self.attn_impl == "explicit":
            attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
            x = F.dropout(attn, self.attn_drop, self.training) @ v
        else:
            x = F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.attn_drop if self.training else 0.0, scale=self.scale
            )
        x = x.transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(x))


class Mlp(nn.Module):
    """fc1 → exact GELU → fc2 (dropout after each, 0 by default)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.act(self.fc1(x)))
        return self.drop(self.fc2(x))


class Block(nn.Module):
    """Pre-norm transformer block (LayerNorm eps 1e-6) with spatial-reduction attention."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        sr_ratio: int = 1,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias, qk_scale, attn_drop, drop, sr_ratio)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), hw))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PyramidVisionTransformer(nn.Module):
    """PVT v1, classification model or (``features_only=True``) four-stage feature extractor.

    Parameters (and their names) are the authors': ``patch_embed{i}``, ``pos_embed{i}``,
    ``block{i}.{j}``, ``cls_token`` (stage 4), ``norm`` and ``head``. ``img_size`` is accepted for
    timm compatibility but the model takes any input of at least 32 pixels a side; the position
    embeddings stay stored for 224 (so the 224 checkpoints load) and are resized per stage.

    ``features_only=True``: the authors' dense-prediction backbone (their detection/pvt.py):
    ``forward`` returns the four stage maps (NCHW, strides 4/8/16/32) and stage 4 runs without
    the cls token (patch part of ``pos_embed4`` only). ``cls_token``, the final ``norm`` and
    ``head`` are not built; ``checkpoint_ignore`` marks those keys of a classification
    checkpoint, so both the ImageNet checkpoints and the backbones of their detection /
    segmentation checkpoints load strictly.
    """

    def __init__(
        self,
        img_size: int | Sequence[int] = PRETRAIN_SIZE,
        patch_size: int = 4,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dims: Sequence[int] = (64, 128, 320, 512),
        num_heads: Sequence[int] = (1, 2, 5, 8),
        mlp_ratios: Sequence[float] = (8, 8, 4, 4),
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        depths: Sequence[int] = (2, 2, 2, 2),
        sr_ratios: Sequence[int] = (8, 4, 2, 1),
        features_only: bool = False,
    ):
        super().__init__()
        self.img_size = as_hw(img_size)
        self.num_classes = num_classes
        self.depths = tuple(depths)
        self.embed_dims = tuple(embed_dims)
        self.num_features = self.head_hidden_size = embed_dims[-1]
        self.features_only = features_only
        self.num_stages = len(depths)

        # position-embedding grids: the 224 grid of each stage (56², 28², 14², 7²)
        grids = [((PRETRAIN_SIZE // patch_size) >> i,) * 2 for i in range(self.num_stages)]
        self.pos_embed_grids = tuple(grids)

        # linear stochastic-depth rule (plain Python so the model also builds on the meta device)
        n_blocks = sum(depths)
        dpr = [drop_path_rate * i / max(n_blocks - 1, 1) for i in range(n_blocks)]
        cur = 0
        for i in range(self.num_stages):
            c_in = in_chans if i == 0 else embed_dims[i - 1]
            setattr(self, f"patch_embed{i + 1}", PatchEmbed(patch_size if i == 0 else 2, c_in, embed_dims[i]))
        for i in range(self.num_stages):
            n = grids[i][0] * grids[i][1] + (1 if i == self.num_stages - 1 else 0)
            setattr(self, f"pos_embed{i + 1}", nn.Parameter(torch.zeros(1, n, embed_dims[i])))
            setattr(self, f"pos_drop{i + 1}", nn.Dropout(drop_rate))
        for i in range(self.num_stages):
            blocks = nn.ModuleList(
                Block(
                    embed_dims[i],
                    num_heads[i],
                    mlp_ratios[i],
                    qkv_bias,
                    qk_scale,
                    drop_rate,
                    attn_drop_rate,
                    dpr[cur + j],
                    sr_ratios[i],
                )
                for j in range(depths[i])
            )
            setattr(self, f"block{i + 1}", blocks)
            cur += depths[i]
        self.cls_token = None if features_only else nn.Parameter(torch.zeros(1, 1, embed_dims[-1]))

        info = [
            dict(num_chs=embed_dims[i], reduction=patch_size * 2**i, module=f"block{i + 1}")
            for i in range(self.num_stages)
        ]
        if features_only:
            self.feature_info = FeatureInfo(info, out_indices=tuple(range(self.num_stages)))
        else:
            self.feature_info = info
            self.norm = nn.LayerNorm(embed_dims[-1], eps=1e-6)
            self.head = nn.Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()

        for i in range(self.num_stages):
            trunc_normal_(getattr(self, f"pos_embed{i + 1}"), std=0.02)
        if self.cls_token is not None:
            trunc_normal_(self.cls_token, std=0.02)
        self.apply(self._init_weights)

    _init_weights = staticmethod(init_transformer_weights)

    # ---- timm conveniences -------------------------------------------------------------
    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"cls_token"} if self.cls_token is not None else set()  # as the authors' (not pos_embed)

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if self.features_only:
            raise RuntimeError("a features_only PVT has no classifier")
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def checkpoint_ignore(self, key: str) -> bool:
        """Checkpoint keys this model deliberately does not take: in ``features_only`` mode the
        ``cls_token``, final ``norm`` and ``head`` of a classification checkpoint."""
        return self.features_only and (key == "cls_token" or key.startswith(("head.", "norm.")))

    grad_checkpointing = False

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in backward (non-reentrant ``torch.utils.checkpoint``)."""
        self.grad_checkpointing = bool(enable)

    # ---- forward -----------------------------------------------------------------------
    def pos_embed_for(self, stage: int, hw: tuple[int, int], with_cls: bool = True) -> torch.Tensor:
        """Position embedding of ``stage`` (0-based) for a token grid ``hw``.

        The stored one when ``hw`` is that stage's 224 grid, else its patch part resized
        bilinearly (align_corners False, no antialias). Stage 4 stores a leading cls entry: kept
        in front when ``with_cls``, dropped otherwise (features_only)."""
        pos = getattr(self, f"pos_embed{stage + 1}")
        cls_pos = None
        if stage == self.num_stages - 1:
            cls_pos, pos = pos[:, :1], pos[:, 1:]
            if not with_cls:
                cls_pos = None
        gh, gw = self.pos_embed_grids[stage]
        h, w = int(hw[0]), int(hw[1])
        if (h, w) != (gh, gw):
            pos = pos.reshape(1, gh, gw, -1).permute(0, 3, 1, 2)
            pos = F.interpolate(pos, size=(h, w), mode="bilinear", align_corners=False)
            pos = pos.flatten(2).transpose(1, 2)
        return pos if cls_pos is None else torch.cat((cls_pos, pos), dim=1)

    def _forward_stages(self, x: torch.Tensor, collect: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the four stages; returns the last stage's tokens and, if ``collect``, the stage
        maps (NCHW). With a cls token (classifier) stage 4 runs on [cls, patches] and its map
        leaves the cls token out; without one (``features_only``) stage 4 runs on the patches
        with the patch part of ``pos_embed4``, as the authors' dense-prediction backbone."""
        maps: list[torch.Tensor] = []
        B = x.shape[0]
        last = self.num_stages - 1
        for i in range(self.num_stages):
            x, hw = getattr(self, f"patch_embed{i + 1}")(x)
            with_cls = i == last and self.cls_token is not None
            if with_cls:
                x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)
            x = getattr(self, f"pos_drop{i + 1}")(x + self.pos_embed_for(i, hw, with_cls=with_cls))
            for blk in getattr(self, f"block{i + 1}"):
                if self.grad_checkpointing and torch.is_grad_enabled():
                    x = checkpoint(blk, x, hw, use_reentrant=False)
                else:
                    x = blk(x, hw)
            if i < last:
                x = x.reshape(B, hw[0], hw[1], -1).permute(0, 3, 1, 2).contiguous()
                if collect:
                    maps.append(x)
            elif collect:
                patches = x[:, 1:] if with_cls else x
                maps.append(patches.reshape(B, hw[0], hw[1], -1).permute(0, 3, 1, 2).contiguous())
        return x, maps

    def forward_features(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Classifier: the last stage's tokens after the final norm, (B, 1 + H·W/1024, C), cls
        first. ``features_only``: the four stage maps."""
        if self.features_only:
            return self._forward_stages(x, collect=True)[1]
        x, _ = self._forward_stages(x, collect=False)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x[:, 0]
        return x if pre_logits else self.head(x)

    def stage_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four stage maps (NCHW, strides 4/8/16/32) as this model computes them (a
        classifier's stage 4 includes the cls token in its attention)."""
        return self._forward_stages(x, collect=True)[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if self.features_only:
            return self._forward_stages(x, collect=True)[1]
        return self.forward_head(self.forward_features(x))


def _cfg(**kwargs) -> dict:
    return imagenet_cfg(
        crop_pct=0.875,
        fixed_input_size=False,
        first_conv="patch_embed1.proj",
        license="apache-2.0",
        paper_ids="arXiv:2102.12122",
        paper_name="Pyramid Vision Transformer: A Versatile Backbone for Dense Prediction without Convolutions",
        origin_url="https://github.com/whai362/PVT",
        **kwargs,
    )


default_cfgs = generate_default_cfgs({name: _cfg() for name in MODEL_NAMES})

_ARCHS = {
    "pvt_tiny": dict(depths=(2, 2, 2, 2)),
    "pvt_small": dict(depths=(3, 4, 6, 3)),
    "pvt_medium": dict(depths=(3, 4, 18, 3)),
    "pvt_large": dict(depths=(3, 8, 27, 3)),
}


def _create_pvt(variant: str, pretrained: bool = False, **kwargs) -> PyramidVisionTransformer:
    if pretrained:
        raise RuntimeError(
            f"{variant}: pretrained=True is not supported (no weight hub here); build it with "
            f"pacabench.models.create_model('{variant}', checkpoint=PATH) and the authors' local .pth file"
        )
    pretrained_cfg, overlay = pop_timm_args(kwargs, "pretrained_model_args")
    cfg = resolve_pretrained_cfg(variant, pretrained_cfg=pretrained_cfg, pretrained_cfg_overlay=overlay)
    cfg = cfg.to_dict()
    model = PyramidVisionTransformer(**{**_ARCHS[variant], **kwargs})
    model.pretrained_cfg = cfg
    model.default_cfg = cfg  # timm's backwards-compatible alias
    return model


def _entrypoint(variant: str, doc: str) -> Callable[..., PyramidVisionTransformer]:
    """``variant``'s timm entry point (registered under its name, so ``timm.create_model`` finds it)."""

    def entry(pretrained: bool = False, **kwargs) -> PyramidVisionTransformer:
        return _create_pvt(variant, pretrained, **kwargs)

    entry.__name__ = entry.__qualname__ = variant
    entry.__doc__ = doc
    return register_model(entry)


pvt_tiny = _entrypoint("pvt_tiny", "PVT-Tiny: depths 2-2-2-2, 13.2M params, 1.9 GFLOPs at 224.")
pvt_small = _entrypoint("pvt_small", "PVT-Small: depths 3-4-6-3, 24.5M params, 3.8 GFLOPs at 224.")
pvt_medium = _entrypoint("pvt_medium", "PVT-Medium: depths 3-4-18-3, 44.2M params, 6.7 GFLOPs at 224.")
pvt_large = _entrypoint("pvt_large", "PVT-Large: depths 3-8-27-3, 61.4M params, 9.8 GFLOPs at 224.")
