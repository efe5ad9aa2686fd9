"""Hub-native artifacts: model/dataset cards filled from measured results, and `hf-eff push`."""

from hf_eff.hub.cards import (
    grant_card,
    halora_card,
    model_card_template,
    scene_card,
    splat_card,
    template_path,
)
from hf_eff.hub.push import build_card, detect_artifact, push_output_dir
from hf_eff.hub.tokens import TokenFreeArgumentsMixin
from hf_eff.hub.trainer_cards import HubCardTrainerMixin

__all__ = [
    "HubCardTrainerMixin",
    "TokenFreeArgumentsMixin",
    "build_card",
    "detect_artifact",
    "grant_card",
    "halora_card",
    "model_card_template",
    "push_output_dir",
    "scene_card",
    "splat_card",
    "template_path",
]
