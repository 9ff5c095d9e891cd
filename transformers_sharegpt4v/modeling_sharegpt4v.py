"""ShareGPT4V model: CLIP vision tower -> 2-layer MLP projector -> Llama, as in ShareGPT4V-7B/13B.

Part of the remote-code unit: imports only torch, transformers and `.configuration_sharegpt4v`.

ShareGPT4V is the LLaVA-1.5 architecture, which transformers ships as `models/llava`. So, as
`modular_vipllava.py` does, the classes here subclass Llava's instead of copying them: the image merge
(`masked_scatter` of the projected features into the `<image>` positions) lives in the backbone
`ShareGPT4VModel.forward`, where TRL's SFTTrainer calls it, and generation encodes the images once
before prefill through `mm_encoder_outputs`. What ShareGPT4V adds is its own config (defaults of the
released checkpoint, validated image geometry), the Auto-class wiring that makes every saved checkpoint
loadable with `trust_remote_code=True`, and the attention backend choice.

Original forward (ShareGPT4V / LLaVA-1.5, "Architecture" in docs/reference.md):
  CLIP ViT-L/14-336 hidden_states[-2] without CLS (576 x 1024) -> Linear -> GELU -> Linear ->
  features replace the `<image>` position -> Llama -> lm_head.
"""

import importlib.util

import torch
from torch import nn
from transformers.models.llava.modeling_llava import (
    LlavaForConditionalGeneration,
    LlavaModel,
    LlavaPreTrainedModel,
)
from transformers.utils import torch_compilable_check

from .configuration_sharegpt4v import ShareGPT4VConfig


def default_attn_implementation(device: str | torch.device | None = None) -> str:
    """The attention backend to ask `from_pretrained` for on `device`.

    `flash_attention_2` on a CUDA device when the `flash_attn` package is importable (the `flash` extra),
    otherwise `sdpa`, which every device supports. `device=None` means "CUDA if available".
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    on_cuda = torch.device(device).type == "cuda"
    if on_cuda and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


class ShareGPT4VPreTrainedModel(LlavaPreTrainedModel):
    config: ShareGPT4VConfig
    config_class = ShareGPT4VConfig
    # device_map="auto" must keep each transformer block on one device.
    _no_split_modules = ["CLIPEncoderLayer", "LlamaDecoderLayer"]


class ShareGPT4VModel(LlavaModel, ShareGPT4VPreTrainedModel):
    """Vision tower + projector + language backbone; merges image features into the token embeddings.

    Raises `ValueError` ("Image features and image tokens do not match, tokens: n, features: m") when the
    number of image tokens in `input_ids` is not `image_seq_length` times the number of images.
    """

    config_class = ShareGPT4VConfig

    def get_placeholder_mask(
        self, input_ids: torch.LongTensor | None, inputs_embeds: torch.Tensor, image_features: torch.Tensor
    ) -> torch.Tensor:
        """Boolean mask (batch, seq, 1) of the image-token positions, checked against the image features.

        Llava's own check reports `numel` as the feature count; this one names images and tokens.
        """
        if input_ids is None:
            image_embedding = self.get_input_embeddings()(
                torch.tensor(self.config.image_token_id, dtype=torch.long, device=inputs_embeds.device)
            )
            special_image_mask = (inputs_embeds == image_embedding).all(-1)
        else:
            special_image_mask = input_ids == self.config.image_token_id
        n_image_tokens = special_image_mask.sum()
        n_features = image_features.shape[0]
        per_image = self.config.image_seq_length
        torch_compilable_check(
            n_image_tokens == n_features,
            lambda: (
                f"Image features and image tokens do not match, tokens: {int(n_image_tokens)}, features: "
                f"{n_features} ({n_features // per_image} image(s) x {per_image}). Each image needs exactly "
                f"{per_image} image tokens (id {self.config.image_token_id}) in input_ids: build inputs with "
                "ShareGPT4VProcessor."
            ),
        )
        return special_image_mask.unsqueeze(-1).to(inputs_embeds.device)


class ShareGPT4VForCausalLM(LlavaForConditionalGeneration, ShareGPT4VPreTrainedModel):
    """`ShareGPT4VModel` + untied `lm_head`: logits, loss on `labels` (-100 ignored) and `generate`."""

    config_class = ShareGPT4VConfig

    def __init__(self, config: ShareGPT4VConfig):
        LlavaPreTrainedModel.__init__(self, config)
        self.model = ShareGPT4VModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()


# `save_pretrained` copies this file and its relative imports into the checkpoint; the config carries the
# `auto_map` entries for every Auto class (see MODEL_AUTO_MAP).
ShareGPT4VConfig.register_for_auto_class("AutoConfig")
ShareGPT4VModel.register_for_auto_class("AutoModel")
ShareGPT4VForCausalLM.register_for_auto_class("AutoModelForCausalLM")

__all__ = [
    "ShareGPT4VForCausalLM",
    "ShareGPT4VModel",
    "ShareGPT4VPreTrainedModel",
    "default_attn_implementation",
]
